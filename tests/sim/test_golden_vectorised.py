"""The golden model's vectorised arithmetic against the definitions it replaces.

The attention of docs/numerics.md section 6 is a loop over keys; the golden model
computes it for all keys at once (section 11). ``attention_key_by_key`` below is that
loop, written as plainly as the document states it: it is the definition these tests
hold the golden model to, bit for bit, on random, extreme and adversarial caches. The
ternary linears and the LM head are exact integer products computed on float BLAS
(``tritium.sim.exact``); they are checked against NumPy's integer matmul.
"""

import dataclasses
import json

import numpy as np
import pytest

import tritium.sim.golden.model as golden
from tritium.hw.config import MODEL_PRESETS, AttentionConfig
from tritium.host.model import Model
from tritium.sim.exact import exact_inputs, exact_matmul, ternary_matmul, ternary_operand
from tritium.sim.golden.fixed import (exp2_neg, reciprocal, saturate, scale_from_int,
                                      scale_mul, shift_round)
from tritium.sim.golden.model import F_SCORE, GoldenCache, GoldenModel, attention
from tritium.sim.golden.tlmm import int_matmul
from tritium.sim.reference import act_quant
from tritium.sim.testing.attention_tb import fill_cache, model_shape, random_scales, score_scale

TINY = MODEL_PRESETS["tiny"]


def attention_key_by_key(q_codes, q_scale, cache, layer, positions, score, rescales=None):
    """docs/numerics.md section 6, one key at a time, Python integers for the last product.
    ``rescales``, a list, receives the number of (query, head) rescales at each key."""
    cfg = cache.config
    tokens, heads, _ = q_codes.shape
    kv_of_head = np.arange(heads) // cfg.kv_group
    qm, qe = scale_mul(q_scale, score)
    running_max = np.zeros((tokens, heads), dtype=np.int64)
    total = np.zeros((tokens, heads), dtype=np.int64)
    acc = np.zeros(q_codes.shape, dtype=np.int64)
    for key in range(int(positions.max()) + 1):
        active = (positions >= key)[:, None]
        k_codes = cache.k_codes[layer, key][kv_of_head].astype(np.int64)
        km = cache.k_scale[0][layer, key][kv_of_head]
        ke = cache.k_scale[1][layer, key][kv_of_head]
        dot = np.sum(q_codes * k_codes[None], axis=-1)
        s = saturate(shift_round(dot * qm * km, -(qe + ke) - F_SCORE))
        ceiling = ((s + (1 << F_SCORE) - 1) >> F_SCORE) << F_SCORE
        new_max = np.where(key == 0, ceiling, np.maximum(running_max, ceiling))
        rescale = (new_max - running_max) >> F_SCORE
        if rescales is not None and key > 0:
            rescales.append(int(np.sum(active & (rescale > 0))))
        total = np.where(active, shift_round(total, rescale), total)
        acc = np.where(active[..., None], shift_round(acc, rescale[..., None]), acc)
        running_max = np.where(active, new_max, running_max)
        prob = exp2_neg(running_max - s)
        vm = cache.v_scale[0][layer, key][kv_of_head]
        ve = cache.v_scale[1][layer, key][kv_of_head]
        weight = shift_round(prob * vm, 15 - ve)
        v_codes = cache.v_codes[layer, key][kv_of_head].astype(np.int64)
        total = np.where(active, total + prob, total)
        acc = np.where(active[..., None], acc + weight[..., None] * v_codes[None], acc)
    inv_m, inv_e = (np.broadcast_to(part[..., None], acc.shape).reshape(-1)
                    for part in reciprocal(127 * total))
    out = [shift_round_python(int(a) * int(m), int(-(e + 15)))
           for a, m, e in zip(acc.reshape(-1), inv_m, inv_e)]
    return saturate(np.array(out, dtype=np.int64).reshape(acc.shape))


def shift_round_python(value: int, shift: int) -> int:
    """The rounding rule on Python integers, kept within +-2**40 (the result saturates
    to int32 next)."""
    value = value << -shift if shift <= 0 else (value + (1 << (shift - 1))) >> shift
    return max(min(value, 2 ** 40), -2 ** 40)


SHAPES = {
    "mha": AttentionConfig(head_dim=16, heads=4, kv_heads=4, capacity=96),
    "gqa": AttentionConfig(head_dim=32, heads=6, kv_heads=2, capacity=96),
    "mqa": AttentionConfig(head_dim=8, heads=4, kv_heads=1, capacity=96),
}


def filled_cache(config, rng, extreme=False):
    cache = GoldenCache(model_shape(config))
    fill_cache(cache, rng, 0, config.capacity, extreme=extreme)
    return cache


def queries(rng, tokens, config, extreme=False):
    shape = (tokens, config.heads, config.head_dim)
    codes = 127 * rng.choice([-1, 1], shape) if extreme else rng.integers(-128, 128, shape)
    return codes, random_scales(rng, shape[:2])


def assert_same_attention(q_codes, q_scale, cache, positions):
    score = score_scale(cache.config.head_dim)
    expected = attention_key_by_key(q_codes, q_scale, cache, 0, positions, score)
    np.testing.assert_array_equal(attention(q_codes, q_scale, cache, 0, positions, score),
                                  expected)
    return expected


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
def test_attention_equals_the_key_by_key_loop(shape, extreme):
    config = SHAPES[shape]
    rng = np.random.default_rng(len(shape) + 7 * extreme)
    cache = filled_cache(config, rng, extreme)
    for positions in (np.arange(config.capacity),                       # a whole prefill
                      np.array([config.capacity - 1]),                  # one decode step
                      rng.permutation(config.capacity)[:20]):           # any order
        q_codes, q_scale = queries(rng, len(positions), config, extreme)
        assert_same_attention(q_codes, q_scale, cache, positions)


def test_attention_with_a_rising_maximum_at_every_key():
    # Keys whose scores rise by more than 1.0 in log2 units each time: every key starts
    # a segment, so the rescale (which rounds) runs at every key, as in the loop.
    config = SHAPES["gqa"]
    rng = np.random.default_rng(11)
    cache = filled_cache(config, rng)
    q_codes = np.full((3, config.heads, config.head_dim), 64)
    q_scale = scale_from_int(np.full((3, config.heads), 2 ** 20))
    cache.k_codes[0] = 64
    peaks = np.round(2.0 ** np.linspace(8, 31, config.capacity)).astype(np.int64)
    for part, table in zip(scale_from_int(np.minimum(peaks, 2 ** 31 - 1)), cache.k_scale):
        table[0] = part[:, None]
    positions = np.array([config.capacity - 1, 40, 7])
    rescales = []
    attention_key_by_key(q_codes, q_scale, cache, 0, positions, score_scale(config.head_dim),
                         rescales)
    assert rescales[:7] == [3 * config.heads] * 7 and sum(rescales) > 6 * config.capacity
    assert_same_attention(q_codes, q_scale, cache, positions)


def test_attention_in_small_blocks_and_few_segments_at_a_time(monkeypatch):
    # The temporaries' bounds cut the queries into blocks and the segments into groups;
    # neither changes a bit.
    monkeypatch.setattr(golden, "_BLOCK_ELEMENTS", 64)
    monkeypatch.setattr(golden, "_SEGMENT_ELEMENTS", 1)
    config = SHAPES["mha"]
    rng = np.random.default_rng(12)
    cache = filled_cache(config, rng)
    q_codes, q_scale = queries(rng, 30, config)
    assert_same_attention(q_codes, q_scale, cache, np.arange(30) + 50)


def test_attention_output_rounding_of_the_71_bit_product():
    # The last step multiplies |o| < 2**55 by a 16-bit mantissa. Every total down to 1
    # (below what a real query reaches) and accumulators near both int64 ends.
    rng = np.random.default_rng(13)
    total = np.concatenate([np.arange(1, 300), rng.integers(1, 2 ** 26, 300)])
    acc = rng.integers(-2 ** 55, 2 ** 55, (len(total), 3))
    acc[:, 0] = 2 ** 55 - 1
    acc[:, 1] = -2 ** 55
    inv_m, inv_e = reciprocal(127 * total)
    expected = [[shift_round_python(int(a) * int(m), int(-(e + 15))) for a in row]
                for row, m, e in zip(acc, inv_m, inv_e)]
    np.testing.assert_array_equal(golden._normalize(acc, total),
                                  saturate(np.array(expected, dtype=np.int64)))


@pytest.mark.parametrize("name", ["gqa-silu", "mha-relu2-interleaved", "mqa"])
def test_model_equals_the_integer_definitions(name, monkeypatch):
    # The whole model with the definitions in place of the fast products: the integer
    # matmul for every linear, the key loop for attention. Same logits, bit for bit.
    small = dataclasses.replace(TINY, name="small", layers=2, max_context=80)
    config = {"gqa-silu": small,
              "mha-relu2-interleaved": dataclasses.replace(
                  small, kv_heads=4, activation="relu2", rope_pairing="interleaved",
                  tied_embedding=True),
              "mqa": dataclasses.replace(small, hidden=192, heads=6, kv_heads=1, head_dim=16,
                                         ffn=256)}[name]
    model = Model.random(config, seed=21)
    ids = np.random.default_rng(22).integers(0, config.vocab_size, 70)

    def run():
        model_golden = GoldenModel(model)
        cache = model_golden.new_cache()
        runs = [model_golden.forward(ids[:50], cache)]
        runs += [model_golden.forward(ids[i:i + 1], cache) for i in range(50, 70)]
        return np.concatenate(runs)

    fast = run()
    monkeypatch.setattr(golden, "ternary_matmul",
                        lambda codes, operand: int_matmul(codes, operand.T.astype(np.int64)))
    monkeypatch.setattr(golden, "attention", attention_key_by_key)
    np.testing.assert_array_equal(fast, run())


def test_prefill_in_chunks_is_one_prefill(monkeypatch):
    model = Model.random(dataclasses.replace(TINY, layers=2), seed=23)
    ids = np.random.default_rng(24).integers(0, 256, 100)
    whole = GoldenModel(model).forward(ids, GoldenModel(model).new_cache())
    monkeypatch.setattr(golden, "PREFILL_CHUNK", 7)
    model_golden = GoldenModel(model)
    np.testing.assert_array_equal(model_golden.forward(ids, model_golden.new_cache()), whole)


# -- exact products on float BLAS -----------------------------------------------------

def test_ternary_matmul_is_the_integer_product():
    rng = np.random.default_rng(31)
    codes = rng.integers(-128, 128, (5, 300))
    codes[0] = -128                                     # the extreme of every partial sum
    weights = rng.integers(-1, 2, (40, 300)).astype(np.int8)
    weights[0] = -1
    np.testing.assert_array_equal(ternary_matmul(codes, ternary_operand(weights)),
                                  int_matmul(codes, weights))


def test_exact_matmul_slices_long_products():
    # 131,072 inputs of -128 x -1 sum to 2**24, float32's last exact integer; one more
    # input needs a second slice.
    inputs = exact_inputs(np.float32, 128, 1) + 1
    codes = np.full((2, inputs), -128)
    weights = -np.ones((3, inputs), dtype=np.int8)
    weights[2, ::2] = 1
    np.testing.assert_array_equal(ternary_matmul(codes, ternary_operand(weights)),
                                  int_matmul(codes, weights))
    assert ternary_matmul(codes, ternary_operand(weights))[0, 0] == 128 * inputs


def test_exact_matmul_refuses_mixed_or_integer_types():
    with pytest.raises(TypeError, match="float32 or two float64"):
        exact_matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float64), 1, 1)
    with pytest.raises(TypeError, match="float32 or two float64"):
        exact_matmul(np.ones((2, 2), np.int64), np.ones((2, 2), np.int64), 1, 1)


def test_reference_linear_is_the_exact_integer_product_times_the_scales():
    # BitNet's BitLinear: act_quant(x) @ (codes * scale).T, here with the codes' product
    # exact and one rounding for the scales; float64 to within its rounding.
    model = Model.random(dataclasses.replace(TINY, layers=1), seed=32)
    x = np.random.default_rng(33).standard_normal((4, TINY.hidden))
    codes, s = act_quant(x)
    assert np.all(np.abs(codes) <= 127) and np.all(codes == np.rint(codes))
    tensor = model.layers[0].wq
    dequantized = (codes / s) @ tensor.dequantize().T
    exact = ternary_matmul(codes, ternary_operand(tensor.codes)) * (tensor.scale / s)
    np.testing.assert_allclose(exact, dequantized, rtol=1e-12, atol=1e-12)


def test_cache_holds_int8_codes():
    cache = GoldenCache(model_shape(SHAPES["gqa"]))
    assert cache.k_codes.dtype == cache.v_codes.dtype == np.int8


def test_bench_golden_reports_measured_host_figures_with_provenance(capsys):
    # What bench/golden.py writes to docs/: every figure labelled measured on the host,
    # with when, which commit and which command; the model's run in a process of its own.
    from tritium.sim.testing.bench_scripts import load_bench
    argv = ["--model", "tiny", "--contexts", "8,20", "--decode", "2", "--threads", "1",
            "--no-write", "--json"]
    assert load_bench("golden").main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "measured (host)" and report["date"] and report["commit"]
    assert report["command"] == "python bench/golden.py " + " ".join(argv)
    assert report["host"]["blas_threads"] == 1
    (entry,) = report["models"]
    assert entry["model"] == "tiny" and entry["peak_rss_bytes"] > 0
    assert [run["context"] for run in entry["runs"]] == [8, 20]
    assert all(len(run["decode_seconds_each"]) == 2 and run["prefill_tokens_per_s"] > 0
               for run in entry["runs"])
