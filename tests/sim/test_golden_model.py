"""The golden model: prefill/decode consistency, bounds against the float reference,
and behaviour at the edges of its number formats."""

import dataclasses

import numpy as np
import pytest

from tritium.hw.config import MODEL_PRESETS
from tritium.host.model import Model
from tritium.sim.golden.fixed import INT32_MAX, INT32_MIN
from tritium.sim.golden.model import GoldenModel, QuantizedModel, norm_quant, quantize_gain
from tritium.sim.reference import ReferenceModel

TINY = MODEL_PRESETS["tiny"]
SMALL = dataclasses.replace(TINY, name="small", layers=2, max_context=64)
VARIANTS = {
    "gqa-silu-half": SMALL,
    "mha-relu2-interleaved-tied": dataclasses.replace(
        SMALL, kv_heads=4, activation="relu2", rope_pairing="interleaved", tied_embedding=True),
    "mqa-wide": dataclasses.replace(SMALL, hidden=192, heads=6, kv_heads=1, head_dim=16, ffn=256),
}


def softmax(logits):
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("name", VARIANTS)
def test_decode_after_prefill_equals_longer_prefill(name):
    model = Model.random(VARIANTS[name], seed=3)
    golden = GoldenModel(model)
    ids = np.random.default_rng(4).integers(0, 256, 24)
    whole_cache = golden.new_cache()
    whole = golden.forward(ids, whole_cache)
    cache = golden.new_cache()
    steps = [golden.forward(ids[:9], cache)]
    steps += [golden.forward(ids[i:i + 1], cache) for i in range(9, 17)]
    steps.append(golden.forward(ids[17:], cache))
    assert np.array_equal(np.concatenate(steps), whole)
    assert cache.length == whole_cache.length == 24
    assert np.array_equal(cache.k_codes, whole_cache.k_codes)
    assert np.array_equal(cache.v_scale[0], whole_cache.v_scale[0])


@pytest.mark.parametrize("name", VARIANTS)
def test_golden_is_close_to_reference(name):
    # Bounds of docs/numerics.md section 8 for random models: the largest logit error
    # relative to the largest logit, and the total variation between the next-token
    # distributions. Trained-model bounds (perplexity) are in test_tiny_numerics.py.
    model = Model.random(VARIANTS[name], seed=5)
    ids = np.random.default_rng(6).integers(0, 256, 48)
    golden, reference = GoldenModel(model), ReferenceModel(model)
    lg = golden.forward(ids, golden.new_cache())
    lr = reference.forward(ids, reference.new_cache())
    assert np.abs(lg - lr).max() <= 0.04 * np.abs(lr).max()
    assert 0.5 * np.abs(softmax(lg) - softmax(lr)).sum(axis=-1).max() <= 0.03


def test_zero_and_huge_embeddings_saturate_without_wrapping():
    model = Model.random(SMALL, seed=7)
    model.embedding[0] = 0.0
    model.embedding[1] = 1e9          # far beyond Q19.12: saturates at the int32 limits
    model.embedding[2, ::2] = -1e9
    golden = GoldenModel(model)
    hidden = golden.forward_hidden([0, 1, 2, 0], golden.new_cache())
    assert hidden.dtype == np.int64
    assert hidden.min() >= INT32_MIN and hidden.max() <= INT32_MAX
    logits = golden.forward([0, 1, 2], golden.new_cache())
    assert np.all(np.isfinite(logits))


def test_norm_quant_matches_float_rmsnorm_quantization():
    rng = np.random.default_rng(8)
    x = rng.integers(-2 ** 20, 2 ** 20, (5, 128))
    x[0] = 0                                           # an all-zero row quantizes to zeros
    x[1, 3] = 2 ** 31 - 1                              # one extreme outlier
    gain = quantize_gain(rng.uniform(0.5, 2.0, 128))
    codes, _ = norm_quant(x, gain, eps_term=1)
    assert np.all(codes[0] == 0)
    assert codes[1, 3] == 127
    product = x * gain.values
    peak = np.maximum(np.abs(product).max(axis=-1, keepdims=True), 1)
    exact = product * 127 / peak
    assert np.abs(codes[2:] - exact[2:]).max() <= 0.5 + 127 * 6e-5


def test_gain_quantization_uses_the_int16_range():
    gain = quantize_gain(np.array([0.5, -3.0, 1.0]))
    assert np.abs(gain.values).max() <= 2 ** 15 - 1
    assert np.abs(gain.values).max() > 2 ** 14
    assert np.allclose(gain.values / 2.0 ** gain.frac_bits, [0.5, -3.0, 1.0], atol=2 ** -12)
    assert quantize_gain(np.zeros(4)).values.tolist() == [0, 0, 0, 0]


def test_quantized_model_constants_are_deterministic():
    model = Model.random(SMALL, seed=9)
    a, b = QuantizedModel(model), QuantizedModel(model)
    assert np.array_equal(a.rope_cos, b.rope_cos)
    assert a.layers[0].linears["wq"].out_scale == b.layers[0].linears["wq"].out_scale
