"""The integer LM head (sim/golden/head.py, docs/numerics.md section 10): exact scores,
argmax and top-k order, the accumulator bounds, the int4 format, and the golden model's
use of it."""

import dataclasses

import numpy as np
import pytest

from tritium.hw.config import MODEL_PRESETS, HeadConfig
from tritium.host.errors import InputError
from tritium.host.model import Model
from tritium.host.runtime import Session
from tritium.sim.golden.fixed import F_ACT
from tritium.sim.golden.head import (head_argmax, head_logits, head_scores, head_topk,
                                     quantize_head)
from tritium.sim.golden.model import GoldenModel, QuantizedModel, final_logits, final_scores
from tritium.sim.reference import ReferenceModel, lm_head

SMALL = dataclasses.replace(MODEL_PRESETS["tiny"], name="small", layers=1, max_context=32)
INT4 = HeadConfig("int4", group=32)


def python_scores(qhead, codes):
    """The definition with Python integers: m_i * sum_j c_j q_ij (int8), or
    sum_g m_ig * sum_{j in g} c_j q_ij (int4)."""
    q = qhead.codes.astype(int).tolist()
    m = qhead.mantissas.tolist()
    group = qhead.hidden if qhead.config.format == "int8" else qhead.config.group
    out = []
    for token in codes.astype(int).tolist():
        row = []
        for i, weights in enumerate(q):
            partials = [sum(c * w for c, w in zip(token[g:g + group], weights[g:g + group]))
                        for g in range(0, qhead.hidden, group)]
            if qhead.config.format == "int8":
                row.append(m[i] * partials[0])
            else:
                row.append(sum(mi * p for mi, p in zip(m[i], partials)))
        out.append(row)
    return out


def random_head(rng, vocab, hidden):
    weights = rng.standard_normal((vocab, hidden)) * rng.uniform(0.01, 1.0, (vocab, 1))
    weights[2] = 0.0                                   # an all-zero row
    weights[5, :7] = 40.0                              # an outlier row
    return weights.astype(np.float32)


@pytest.mark.parametrize("config", [HeadConfig(), INT4], ids=["int8", "int4"])
def test_scores_equal_the_integer_definition(config):
    rng = np.random.default_rng(1)
    qhead = quantize_head(random_head(rng, 23, 96), config)
    codes = rng.integers(-128, 128, (4, 96))
    assert head_scores(qhead, codes).tolist() == python_scores(qhead, codes)
    assert np.all(qhead.mantissas[2] == 0) and np.all(qhead.codes[2] == 0)
    assert np.abs(qhead.codes).max() == config.code_max


def test_the_exponent_gives_the_largest_scale_16_bits_even_when_rounding_carries():
    for top in (0.8, 65535.75 * 2.0 ** -20, 1.0):       # the second rounds up to 2**16
        weights = np.array([[127 * top, 1.0], [0.25, -0.5]])
        qhead = quantize_head(weights)
        assert 2 ** 15 <= qhead.mantissas.max() < 2 ** 16
        scales = np.abs(weights).max(axis=1) / 127
        assert np.all(np.abs(np.ldexp(qhead.mantissas, qhead.exponent) - scales)
                      <= 2.0 ** (qhead.exponent - 1))


def test_worst_case_accumulators_fit_their_width_and_are_exact():
    # int8: 128 * 127 per input; the largest hidden size allowed still fits int32.
    int8 = HeadConfig()
    hidden = int8.max_hidden()
    assert 128 * 127 * hidden <= 2 ** 31 - 1 < 128 * 127 * (hidden + 1)
    qhead = quantize_head(np.ones((2, hidden)) * [[1.0], [-1.0]])
    scores = head_scores(qhead, np.full((1, hidden), -128))
    acc = -128 * 127 * hidden
    assert -2 ** 31 <= acc and scores.tolist() == [[acc * int(qhead.mantissas[0]),
                                                    -acc * int(qhead.mantissas[1])]]
    # Odd products too (127 * 127), so a float32 partial sum past 2**24 would round:
    # the host's exact-product slicing is what keeps this equal.
    codes = np.full((1, hidden), -128)
    codes[0, ::3] = 127
    acc = 127 * int(codes.sum())
    assert head_scores(qhead, codes).tolist() == [[acc * int(qhead.mantissas[0]),
                                                   -acc * int(qhead.mantissas[1])]]
    with pytest.raises(ValueError, match="at most 132104 inputs"):
        quantize_head(np.ones((1, hidden + 1)))
    # int4: 128 * 7 * (2**16 - 1) per input in a 48-bit accumulator.
    assert 128 * 7 * 65535 * INT4.max_hidden() <= 2 ** 47 - 1
    qhead = quantize_head(np.ones((1, 4096)), INT4)
    expected = -128 * 7 * 32 * int(qhead.mantissas.sum())
    assert head_scores(qhead, np.full((1, 4096), -128)).tolist() == [[expected]]


def test_argmax_ties_go_to_the_lowest_index_and_top_k_orders_by_score_then_index():
    scores = np.array([[5, 9, 9, 1, 5], [0, 0, 0, 0, 0]])
    assert head_argmax(scores).tolist() == [1, 0]
    values, indices = head_topk(scores, 4)
    assert indices.tolist() == [[1, 2, 0, 4], [0, 1, 2, 3]]
    assert values.tolist() == [[9, 9, 5, 5], [0, 0, 0, 0]]
    # Equal rows give equal scores; the float logits keep the integer argmax.
    rng = np.random.default_rng(2)
    weights = rng.standard_normal((12, 64))
    weights[9] = weights[4] = weights[7]
    qhead = quantize_head(weights)
    codes = np.clip(np.rint(weights[7] * 40), -128, 127).astype(np.int64)[None]
    scores = head_scores(qhead, codes)
    assert head_argmax(scores).tolist() == [4]
    logits = head_logits(qhead, scores, (np.array([40000]), np.array([-20])), 14)
    assert int(np.argmax(logits)) == 4 and logits[0, 4] == logits[0, 7] == logits[0, 9]


@pytest.mark.parametrize("config", [HeadConfig(), INT4], ids=["int8", "int4"])
def test_dequantized_head_is_within_half_a_step(config):
    rng = np.random.default_rng(3)
    weights = random_head(rng, 16, 128).astype(np.float64)
    qhead = quantize_head(weights, config)
    group = 128 if config.format == "int8" else config.group
    absmax = np.abs(weights.reshape(16, -1, group)).max(axis=-1)
    step = np.repeat(absmax / config.code_max, group, axis=1)
    # Half a code step, plus each code's share of the mantissa's rounding (half an LSB).
    bound = step / 2 + config.code_max * 2.0 ** (qhead.exponent - 1) + 1e-12
    assert np.all(np.abs(qhead.dequantize() - weights) <= bound)


def test_int4_halves_the_heads_bytes():
    int8, int4 = HeadConfig(), HeadConfig("int4", group=64)
    ratio = int4.weight_bytes(32002, 1536) / int8.weight_bytes(32002, 1536)
    assert 0.5 < ratio < 0.54
    assert quantize_head(np.ones((3, 128)), int4).weight_bytes == 3 * 64 + 2 * 3 * 2


def test_golden_forward_uses_the_integer_head():
    model = Model.random(SMALL, seed=4)
    golden = GoldenModel(model)
    ids = [3, 1, 4, 1, 5, 9]
    hidden = golden.forward_hidden(ids, golden.new_cache())
    logits = golden.forward(ids, golden.new_cache())
    assert np.array_equal(logits, final_logits(golden.qmodel, hidden))
    scores, _ = final_scores(golden.qmodel, hidden)
    assert np.array_equal(np.argmax(logits, axis=-1), head_argmax(scores))
    # Close to the float head on the same hidden states (docs/numerics.md section 10),
    # but not equal: the head's weights are int8.
    exact = lm_head(model, hidden / 2.0 ** F_ACT)
    assert 0 < np.abs(logits - exact).max() <= 0.02 * np.abs(exact).max()
    int4 = GoldenModel(model, QuantizedModel(model, INT4)).forward(ids, golden.new_cache())
    assert not np.array_equal(int4, logits)
    assert np.abs(int4 - exact).max() <= 0.12 * np.abs(exact).max()
    assert golden.qmodel.head is golden.qmodel.head          # quantized once


@pytest.mark.parametrize("backend", [GoldenModel, ReferenceModel])
def test_last_logits_equal_the_last_row_of_all(backend):
    model = Model.random(SMALL, seed=5)
    run = backend(model)
    ids = [7, 7, 2, 200, 13]
    everything = run.forward(ids, run.new_cache())
    last = run.forward(ids, run.new_cache(), logits="last")
    assert last.shape == (1, SMALL.vocab_size) and np.array_equal(last[0], everything[-1])
    session = Session(run)
    assert np.array_equal(session.prefill(ids, logits="last"), last)


def one_line(excinfo):
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize("call, match", [
    (lambda: quantize_head(np.ones(8)), "non-empty \\(vocab, hidden\\) array"),
    (lambda: quantize_head(np.full((2, 2), np.nan)), "NaN or infinite"),
    (lambda: quantize_head(np.ones((2, 100)), HeadConfig("int4", 64)), "must divide"),
    (lambda: HeadConfig("int2"), "must be one of"),
    (lambda: HeadConfig("int4", group=0), "positive integer"),
    (lambda: head_scores(quantize_head(np.ones((2, 8))), np.zeros((1, 9), int)),
     "shape \\(tokens, 8\\)"),
    (lambda: head_scores(quantize_head(np.ones((2, 8))), np.full((1, 8), 128)), "int8"),
    (lambda: head_scores(quantize_head(np.ones((2, 8))), np.zeros((1, 8))), "integer"),
    (lambda: head_topk(np.zeros((1, 4), int), 5), "k from 1 to"),
    (lambda: head_argmax(np.zeros(4, int)), "\\(tokens, vocab\\)"),
])
def test_bad_input_raises_a_one_line_value_error(call, match):
    with pytest.raises(ValueError, match=match) as excinfo:
        call()
    one_line(excinfo)


def test_bad_logit_rows_raise_before_the_cache_changes():
    model = Model.random(SMALL, seed=6)
    golden = GoldenModel(model)
    cache = golden.new_cache()
    with pytest.raises(ValueError, match="logits must be one of") as excinfo:
        golden.forward([1, 2], cache, logits="first")
    one_line(excinfo)
    assert cache.length == 0
    with pytest.raises(InputError, match="logits must be one of") as excinfo:
        Session(golden).feed([1], logits="none")
    one_line(excinfo)
    with pytest.raises(ValueError, match="hidden states"):
        final_logits(golden.qmodel, np.zeros((2, 5), int))
