"""Bit-exact LM head: integer weights, integer scores, integer argmax (docs/numerics.md
section 10).

The final RMSNorm is the NORM of every linear (:func:`.model.norm_quant`), giving int8
codes ``c`` and a per-token scale. The head's weights are int8 codes with one scale per
vocabulary row (or int4 codes with one scale per group of hidden dims, the ``int4``
format of :class:`~tritium.hw.config.HeadConfig`); every scale is a 16-bit mantissa
``m`` times ``2**exponent``, one exponent for the whole head. A row's score is then the
exact integer

    int8:  score_i = m_i * sum_j c_j q_ij                 (int32 sum, then one multiply)
    int4:  score_i = sum_g m_ig * sum_{j in g} c_j q_ij   (48-bit sum)

which the hardware's argmax compares without float. Float logits, for sampling and
perplexity, are ``score * 2**exponent * token factor`` in float64 (:func:`head_logits`).
"""

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from tritium.hw.config import ACT_CODE_PEAK, HeadConfig
from tritium.hw.numerics import MANTISSA_BITS
from ..exact import exact_matmul

__all__ = ["HeadConfig", "QuantizedHead", "quantize_head", "head_scores", "head_argmax",
           "head_topk", "head_logits", "token_factors"]

_ROWS_PER_CHUNK = 4096          # quantize in row blocks: no float64 copy of a whole head


@dataclass(frozen=True, eq=False)
class QuantizedHead:
    """An LM head as the hardware holds it.

    ``codes``: (vocab, hidden) int8 in [-code_max, code_max]; ``mantissas``: int64 in
    [0, 2**16), one per row (int8, shape (vocab,)) or per row and group (int4, shape
    (vocab, hidden // group)); every scale is ``mantissa * 2**exponent``.
    """
    config: HeadConfig
    codes: np.ndarray
    mantissas: np.ndarray
    exponent: int

    @property
    def vocab(self) -> int:
        return self.codes.shape[0]

    @property
    def hidden(self) -> int:
        return self.codes.shape[1]

    @property
    def weight_bytes(self) -> int:
        """Bytes of codes and mantissas in the hardware's storage."""
        return self.config.weight_bytes(self.vocab, self.hidden)

    def dequantize(self) -> np.ndarray:
        """The float64 weights the codes and scales stand for, (vocab, hidden)."""
        scales = np.ldexp(self.mantissas.astype(np.float64), self.exponent)
        if self.config.format == "int8":
            return self.codes * scales[:, None]
        return self.codes * np.repeat(scales, self.config.group, axis=1)

    @cached_property
    def _operand(self) -> np.ndarray:
        """The codes, transposed to (hidden, vocab), in the float type whose BLAS product
        is exact; made once per head.

        int8: float32 codes (4 bytes per weight), multiplied by
        :func:`tritium.sim.exact.exact_matmul` in slices of at most 1,032 inputs
        (|activation code| <= 128, |weight code| <= 127; contiguous row blocks of this
        layout). int4: the codes times their group mantissas in float64 (every partial
        sum stays below 2**47, far inside float64's 2**53).
        """
        if self.config.format == "int8":
            return np.ascontiguousarray(self.codes.T, dtype=np.float32)
        groups = self.hidden // self.config.group
        folded = self.codes.reshape(self.vocab, groups, self.config.group) \
            * self.mantissas[:, :, None].astype(np.float64)
        return np.ascontiguousarray(folded.reshape(self.vocab, self.hidden).T)


def _check_weights(weights) -> np.ndarray:
    weights = np.asarray(weights)
    if weights.ndim != 2 or weights.dtype.kind not in "fiu" or 0 in weights.shape:
        raise ValueError(f"LM head weights must be a non-empty (vocab, hidden) array of "
                         f"numbers, not {weights.dtype} of shape {weights.shape}")
    if not np.all(np.isfinite(weights)):
        raise ValueError("LM head weights contain NaN or infinite values")
    return weights


def _shared_exponent(scales: np.ndarray) -> int:
    """The exponent E that gives the largest scale a 16-bit mantissa (MSB set)."""
    peak = float(scales.max())
    if peak == 0:
        return 0
    # frexp is exact: peak = f * 2**e with f in [0.5, 1), so floor(log2(peak)) = e - 1.
    exponent = np.frexp(peak)[1] - 1 - (MANTISSA_BITS - 1)
    if np.rint(np.ldexp(peak, -exponent)) >= 2 ** MANTISSA_BITS:    # rounded up a bit
        exponent += 1
    return exponent


def quantize_head(weights, config: HeadConfig = None) -> QuantizedHead:
    """Quantize float LM head weights (vocab, hidden) once, on the host.

    Per row (int8) or per (row, group) (int4): ``absmax`` of the weights, codes
    ``rint(w * code_max / absmax)`` (``w * code_max`` is exact in float64, so the one
    rounding before ``rint`` is the division; ties to even), clipped to +-code_max,
    scale ``absmax / code_max``; all-zero rows or groups get codes and scale 0. The
    mantissas are ``rint(scale * 2**-E)`` with the one exponent ``E`` of
    :func:`_shared_exponent`.
    """
    config = config or HeadConfig()
    weights = _check_weights(weights)
    vocab, hidden = weights.shape
    config.check(hidden)
    group = hidden if config.format == "int8" else config.group
    groups = hidden // group
    codes = np.empty((vocab, hidden), dtype=np.int8)
    scales = np.empty((vocab, groups), dtype=np.float64)
    for start in range(0, vocab, _ROWS_PER_CHUNK):
        block = weights[start:start + _ROWS_PER_CHUNK].astype(np.float64)
        block = block.reshape(len(block), groups, group)
        absmax = np.max(np.abs(block), axis=-1, keepdims=True)
        safe = np.where(absmax == 0, 1.0, absmax)
        q = np.clip(np.rint(block * config.code_max / safe), -config.code_max, config.code_max)
        codes[start:start + len(block)] = q.reshape(len(block), hidden)
        scales[start:start + len(block)] = absmax[..., 0] / config.code_max
    exponent = _shared_exponent(scales)
    mantissas = np.rint(np.ldexp(scales, -exponent)).astype(np.int64)
    if config.format == "int8":
        mantissas = mantissas[:, 0]
    return QuantizedHead(config, codes, mantissas, int(exponent))


def _check_codes(qhead: QuantizedHead, codes) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != qhead.hidden or codes.dtype.kind not in "iu":
        raise ValueError(f"the LM head takes integer activation codes of shape (tokens, "
                         f"{qhead.hidden}), not {codes.dtype} of shape {codes.shape}")
    if codes.size and (codes.min() < -128 or codes.max() > 127):
        raise ValueError(f"activation codes must be int8 (-128 .. 127), not "
                         f"{int(codes.min())} .. {int(codes.max())}")
    return codes


def head_scores(qhead: QuantizedHead, codes) -> np.ndarray:
    """Every row's exact integer score for each token: (tokens, hidden) int8 activation
    codes -> (tokens, vocab) int64 (|score| < 2**47).

    Computed with float BLAS products that are exact by construction (see
    ``QuantizedHead._operand``), so the result is the integer definition whatever the
    BLAS's summation order and whatever the number of tokens.
    """
    codes = _check_codes(qhead, codes)
    operand = qhead._operand
    if qhead.config.format == "int4":
        return np.rint(codes.astype(np.float64) @ operand).astype(np.int64)
    acc = exact_matmul(codes.astype(np.float32), operand, ACT_CODE_PEAK, qhead.config.code_max)
    return acc * qhead.mantissas


def _check_scores(scores) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.dtype.kind not in "iu" or scores.shape[1] == 0:
        raise ValueError(f"head scores must be a (tokens, vocab) integer array, not "
                         f"{scores.dtype} of shape {scores.shape}")
    return scores


def head_argmax(scores) -> np.ndarray:
    """The index of each token's largest score, the lowest index among equal ones."""
    return np.argmax(_check_scores(scores), axis=-1)


def head_topk(scores, k: int):
    """Each token's ``k`` best ``(scores, indices)``, (tokens, k) each, ordered by score
    descending, equal scores by index ascending (so ``indices[:, 0]`` is the argmax)."""
    scores = _check_scores(scores)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) \
            or not 1 <= k <= scores.shape[1]:
        raise ValueError(f"top-k takes k from 1 to the vocabulary of {scores.shape[1]}, "
                         f"not {k!r}")
    # A stable sort of the negated scores keeps equal scores in index order.
    order = np.argsort(-scores.astype(np.int64), axis=-1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=-1), order


def token_factors(qhead: QuantizedHead, token_scale, gain_frac_bits: int) -> np.ndarray:
    """Each token's float64 factor from integer score to logit:
    ``ts.m * 2**(ts.e + E - F_G) * (sqrt(hidden) / 127)``.

    ``token_scale`` is :func:`.model.norm_quant`'s per-token scale ``(m, e)`` with the
    output norm, ``gain_frac_bits`` that norm's ``F_G``; 127 is the activation codes'
    full scale. The power of two is exact; the one rounding is the product with the
    constant, so the factor is the same on every host.
    """
    m, e = (np.asarray(part, dtype=np.int64) for part in token_scale)
    constant = np.sqrt(float(qhead.hidden)) / 127.0
    return np.ldexp(m.astype(np.float64), e + qhead.exponent - gain_frac_bits) * constant


def head_logits(qhead: QuantizedHead, scores, token_scale, gain_frac_bits: int) -> np.ndarray:
    """Float64 logits (tokens, vocab): each exact integer score (below 2**47, so exact in
    float64) times its token's :func:`token_factors`, one rounding per logit. A positive
    factor keeps the order of the scores, so the float argmax is :func:`head_argmax`."""
    scores = _check_scores(scores)
    factors = token_factors(qhead, token_scale, gain_frac_bits)
    if factors.shape != (scores.shape[0],):
        raise ValueError(f"{scores.shape[0]} tokens of scores but {factors.size} token scales")
    return scores.astype(np.float64) * factors[:, None]
