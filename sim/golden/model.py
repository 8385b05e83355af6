"""Bit-exact golden model of the accelerator's decoder layers (docs/numerics.md).

:class:`QuantizedModel` is what the host compiles a :class:`~tritium.host.model.Model`
into: integer norm gains, per-linear output scales, the RoPE table. :class:`GoldenModel`
runs prefill and decode on it with integer arithmetic only, using the primitives of
:mod:`.fixed`; the hidden state between layers is int32 Q19.12. The embedding lookup
runs on the host, as on the hardware; the final norm and the LM head are the integer
head of :mod:`.head`.
"""

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from tritium.hw.config import ACT_CODE_PEAK, HeadConfig
from tritium.hw.numerics import F_SCORE, GAIN_MAX, ROPE_FRAC, rope_table
from .fixed import (F_ACT, normalize_even, reciprocal, rsqrt, saturate, scale_apply,
                    scale_from_float, scale_from_int, scale_mul, shift_round, exp2_neg,
                    sigmoid)
from .head import head_logits, head_scores, head_topk, quantize_head
from ..exact import exact_matmul, ternary_matmul, ternary_operand
from ..reference import check_logit_rows, logit_rows, rope_pairs

__all__ = ["NormGain", "QuantizedLayer", "QuantizedModel", "GoldenCache", "GoldenModel",
           "quantize_gain", "norm_quant", "act_codes", "rope", "rope_tables", "attention",
           "attention_step",
           "ffn_activation", "embed", "final_scores", "final_top", "final_logits", "F_SCORE",
           "ROPE_FRAC"]

LOG2E = 1.4426950408889634


@dataclass(frozen=True)
class NormGain:
    """An RMSNorm gain vector as int16 ``values`` with ``frac_bits`` fractional bits."""
    values: np.ndarray
    frac_bits: int


def quantize_gain(gain: np.ndarray) -> NormGain:
    """Choose the largest fractional width that keeps every gain in int16, then round."""
    peak = float(np.max(np.abs(gain)))
    frac_bits = 15 if peak == 0 else int(np.floor(np.log2(GAIN_MAX / peak)))
    values = np.rint(np.asarray(gain, dtype=np.float64) * 2.0 ** frac_bits)
    if np.max(np.abs(values)) > GAIN_MAX:       # rounding up past the int16 range
        frac_bits -= 1
        values = np.rint(np.asarray(gain, dtype=np.float64) * 2.0 ** frac_bits)
    return NormGain(values.astype(np.int64), frac_bits)


@dataclass(frozen=True, eq=False)
class QuantizedLinear:
    weights: np.ndarray         # (N, K) ternary codes (the model's int8 array, not a copy)
    out_scale: tuple            # scale: beta * sqrt(K) * 2**(F_ACT - gain frac) / 127

    @cached_property
    def operand(self) -> np.ndarray:
        """The weights as the float32 operand of exact products (``tritium.sim.exact``),
        made at the first product: the host's compiler never needs it."""
        return ternary_operand(self.weights)


@dataclass(frozen=True)
class QuantizedLayer:
    attn_norm: NormGain
    attn_sub_norm: NormGain
    ffn_norm: NormGain
    ffn_sub_norm: NormGain
    linears: dict               # name -> QuantizedLinear


def _eps_term(eps: float, features: int) -> int:
    """eps of RMSNorm in the units of the integer sum of squares (at least 1)."""
    return max(1, int(np.rint(eps * features * 2.0 ** (2 * F_ACT))))


class QuantizedModel:
    """The host-compiled integer form of a model: everything the hardware is given.

    ``head`` (a :class:`~tritium.hw.config.HeadConfig`, default int8) is the LM head's
    format; the head itself is quantized on first use and kept (:attr:`head`).
    """

    def __init__(self, model, head: HeadConfig = None):
        cfg = model.config
        self.model = model
        self.config = cfg
        self.head_config = head or HeadConfig()
        # Checked now, not at the first logits: a head the format cannot hold.
        self.head_config.check(cfg.hidden)
        self.layers = []
        norm_of = {"wq": "attn_norm", "wk": "attn_norm", "wv": "attn_norm",
                   "wo": "attn_sub_norm", "w_gate": "ffn_norm", "w_up": "ffn_norm",
                   "w_down": "ffn_sub_norm"}
        for layer in model.layers:
            gains = {name: quantize_gain(getattr(layer, name)) for name in set(norm_of.values())}
            linears = {}
            for name, norm in norm_of.items():
                tensor = getattr(layer, name)
                features = tensor.codes.shape[1]
                value = (tensor.scale * np.sqrt(features)
                         * 2.0 ** (F_ACT - gains[norm].frac_bits) / 127)
                linears[name] = QuantizedLinear(tensor.codes, scale_from_float(value))
            self.layers.append(QuantizedLayer(linears=linears, **gains))
        # The final norm before the LM head: a NORM like every other, eps of hidden.
        self.output_norm = quantize_gain(model.output_norm)
        self.eps = {n: _eps_term(cfg.norm_eps, n) for n in (cfg.hidden, cfg.q_dim, cfg.ffn)}
        # log2(e) / (127**2 * 2**(2*F_ACT) * sqrt(head_dim)): turns q.k codes into log2 units.
        self.score_scale = scale_from_float(
            LOG2E / (127.0 ** 2 * 2.0 ** (2 * F_ACT) * np.sqrt(cfg.head_dim)))
        self.rope_cos, self.rope_sin = rope_tables(cfg)

    @cached_property
    def head(self):
        """The quantized LM head (:func:`.head.quantize_head`), made once per model."""
        return quantize_head(self.model.head, self.head_config)


def rope_tables(config):
    """The Q1.14 cos and sin tables, (max_context, head_dim / 2) each
    (``tritium.hw.numerics.rope_table``, the ROM's contents)."""
    cos, sin = rope_table(config.max_context, config.head_dim, config.rope_theta)
    return np.array(cos, dtype=np.int64), np.array(sin, dtype=np.int64)


def attention_step(config, tables, cache, layer, positions, heads, keys, values, score_scale):
    """The attention part of a layer, from the QKV linears' outputs to its output.

    ``heads``: (T, heads, d), ``keys`` and ``values``: (T, kv_heads, d), int32 Q.12,
    for tokens at ``positions``; ``tables`` is ``rope_tables(config)``. Rotates Q and
    K, quantizes every head, stores K and V in ``cache`` and returns the attention
    output (T, heads, d), int32 Q.12.
    """
    # RoPE and the quantization work head by head, so Q, K and V go through each once.
    split = [heads.shape[1], heads.shape[1] + keys.shape[1]]
    rotated = rope(np.concatenate([heads, keys], axis=1), positions, _Rotation(config, *tables))
    codes, scale = act_codes(np.concatenate([rotated, values], axis=1))
    q_codes, k_codes, v_codes = np.split(codes, split, axis=1)
    q_scale, k_scale, v_scale = zip(*(np.split(part, split, axis=1) for part in scale))
    cache.store(layer, positions, k_codes, k_scale, v_codes, v_scale)
    return attention(q_codes, q_scale, cache, layer, positions, score_scale)


@dataclass(frozen=True)
class _Rotation:
    config: object
    rope_cos: np.ndarray
    rope_sin: np.ndarray


def embed(model, token_ids) -> np.ndarray:
    """Host-side embedding lookup, rounded (half to even) to int32 Q19.12."""
    rows = model.embedding[np.asarray(token_ids, dtype=np.int64)].astype(np.float64)
    return saturate(np.rint(rows * 2.0 ** F_ACT))


def _sum_of_squares(x: np.ndarray) -> list:
    """Exact per-row sum of squares of int32 values, as Python ints (up to ~76 bits).

    Splitting x = hi * 2**16 + lo keeps every partial sum inside int64.
    """
    hi, lo = x >> 16, x & 0xFFFF
    parts = (np.sum(hi * hi, axis=-1), np.sum(hi * lo, axis=-1), np.sum(lo * lo, axis=-1))
    return [(int(a) << 32) + (int(b) << 17) + int(c) for a, b, c in zip(*parts)]


_SCALE_127 = scale_from_int(127)           # the codes' full scale, as a scale


def act_codes(values: np.ndarray):
    """Per-row absmax int8 quantization: codes and the row's absmax as a scale.

    codes = clamp(round(values * 127 / absmax), -128, 127) with the reciprocal from
    the table; |values| < 2**46.
    """
    peak = np.max(np.abs(values), axis=-1)
    inverse = scale_mul(reciprocal(peak), _SCALE_127)
    codes = np.clip(shift_round(values * inverse[0][..., None], -inverse[1][..., None]),
                    -128, 127)
    return codes, scale_from_int(peak)


def norm_quant(x: np.ndarray, gain: NormGain, eps_term: int):
    """Fused RMSNorm and activation quantization for a linear's input.

    Returns the int8 codes of ``x * gain`` (RMSNorm's 1/rms is a per-token factor
    that absmax quantization divides out) and the per-token scale
    ``absmax(x * gain) / sqrt(sum(x**2) + eps_term)`` that the linear's output scale
    multiplies in.
    """
    product = x * gain.values
    codes, peak = act_codes(product)
    tops, shifts = zip(*(normalize_even(ss + eps_term) for ss in _sum_of_squares(x)))
    token_scale = scale_mul(peak, rsqrt(np.array(tops), np.array(shifts)))
    return codes, token_scale


def final_scores(qmodel: QuantizedModel, hidden: np.ndarray):
    """The final norm and the LM head's integer scores of int32 Q.12 hidden states
    (tokens, hidden): ``(scores (tokens, vocab) int64, token_scale)``."""
    codes, token_scale = norm_quant(hidden, qmodel.output_norm, qmodel.eps[qmodel.config.hidden])
    return head_scores(qmodel.head, codes), token_scale


def final_top(qmodel: QuantizedModel, hidden: np.ndarray, k: int):
    """What a device head returns for the last of ``hidden`` (tokens, hidden): the ``k``
    best rows and their exact integer scores, ``(indices (k,), scores (k,))`` int64,
    score descending, equal scores by row ascending (``head_topk``; docs/head.md)."""
    hidden = np.asarray(hidden, dtype=np.int64)
    if hidden.ndim != 2 or hidden.shape[1] != qmodel.config.hidden or len(hidden) == 0:
        raise ValueError(f"final_top takes (tokens >= 1, {qmodel.config.hidden}) hidden "
                         f"states, not an array of shape {hidden.shape}")
    scores, _ = final_scores(qmodel, hidden[-1:])
    best, order = head_topk(scores, k)
    return order[0].astype(np.int64), best[0].astype(np.int64)


def final_logits(qmodel: QuantizedModel, hidden: np.ndarray) -> np.ndarray:
    """Float64 logits (tokens, vocab) of int32 Q.12 hidden states: the final norm, the
    integer LM head and its float conversion (docs/numerics.md section 10). A token's
    logits depend on its hidden state only, never on the other tokens given."""
    hidden = np.asarray(hidden, dtype=np.int64)
    if hidden.ndim != 2 or hidden.shape[1] != qmodel.config.hidden:
        raise ValueError(f"final_logits takes (tokens, {qmodel.config.hidden}) hidden "
                         f"states, not an array of shape {hidden.shape}")
    if len(hidden) == 0:
        return np.zeros((0, qmodel.config.vocab_size))
    scores, token_scale = final_scores(qmodel, hidden)
    return head_logits(qmodel.head, scores, token_scale, qmodel.output_norm.frac_bits)


def linear(codes: np.ndarray, token_scale, layer_linear: QuantizedLinear) -> np.ndarray:
    """Ternary matmul of int8 codes, dequantized to int32 Q19.12. The product is the
    exact integer one (``tritium.sim.exact``), as the TLMM engine's."""
    acc = ternary_matmul(codes, layer_linear.operand)
    m, e = scale_mul(token_scale, layer_linear.out_scale)
    return scale_apply(acc, (m[:, None], e[:, None]))


def rope(x: np.ndarray, positions: np.ndarray, qmodel: QuantizedModel) -> np.ndarray:
    """Rotate (tokens, heads, head_dim) Q.12 vectors with the Q1.14 cos/sin table."""
    cos = qmodel.rope_cos[positions][:, None, :]
    sin = qmodel.rope_sin[positions][:, None, :]
    a, b = rope_pairs(x.shape[-1], qmodel.config.rope_pairing)
    out = np.empty_like(x)
    out[..., a] = saturate(shift_round(x[..., a] * cos - x[..., b] * sin, ROPE_FRAC))
    out[..., b] = saturate(shift_round(x[..., a] * sin + x[..., b] * cos, ROPE_FRAC))
    return out


class GoldenCache:
    """The KV cache as the hardware keeps it: int8 codes and one scale per (token, kv head)."""

    def __init__(self, config):
        self.config = config
        shape = (config.layers, config.max_context, config.kv_heads)
        self.k_codes = np.zeros(shape + (config.head_dim,), dtype=np.int8)
        self.v_codes = np.zeros_like(self.k_codes)
        self.k_scale = (np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64))
        self.v_scale = (np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64))
        self.length = 0

    def store(self, layer, positions, k_codes, k_scale, v_codes, v_scale):
        self.k_codes[layer, positions] = k_codes
        self.v_codes[layer, positions] = v_codes
        for cached, new in ((self.k_scale, k_scale), (self.v_scale, v_scale)):
            cached[0][layer, positions], cached[1][layer, positions] = new


PREFILL_CHUNK = 128             # tokens per pass through the layers (GoldenModel.forward_hidden)
_BLOCK_ELEMENTS = 2 ** 20       # (query, head, key) elements of a block's temporaries
_SEGMENT_ELEMENTS = 2 ** 22     # (query, head, segment, key) elements of one value product


def attention(q_codes, q_scale, cache: GoldenCache, layer: int, positions: np.ndarray,
              score_scale) -> np.ndarray:
    """Causal attention with an online softmax over keys in ascending order.

    q_codes: (T, heads, d) int8; q_scale: scale per (T, heads). Returns (T, heads, d)
    int32 Q.12. Each (query, head) keeps a running integer max ``m`` (a multiple of
    1.0 in log2 units, so rescaling is a shift), a running sum ``l`` of Q1.15
    probabilities and an accumulator ``o``; see docs/numerics.md section 6, whose
    key-by-key loop this computes for all keys at once (section 11 says how). Queries
    go in blocks that bound the temporaries' memory.
    """
    heads = q_codes.shape[1]
    keys = int(np.max(positions)) + 1
    # The cached codes as the float operands of exact products, converted once: keys
    # (kv heads, d, n) in float32, values (kv heads, n, d) in float64, as value weights
    # reach 2**31 (_segment_sums).
    operands = (cache.k_codes[layer, :keys].transpose(1, 2, 0).astype(np.float32),
                cache.v_codes[layer, :keys].transpose(1, 0, 2).astype(np.float64))
    qm, qe = scale_mul(q_scale, score_scale)                   # (T, H)
    block = max(1, _BLOCK_ELEMENTS // (heads * keys))
    out = np.empty(q_codes.shape, dtype=np.int64)
    for start in range(0, len(positions), block):
        rows = slice(start, start + block)
        out[rows] = _attend(q_codes[rows], (qm[rows], qe[rows]), cache, layer, positions[rows],
                            operands)
    return out


def _attend(q_codes, q_score_scale, cache: GoldenCache, layer: int, positions,
            operands) -> np.ndarray:
    """:func:`attention` for a block of queries, every key at once.

    A key's score, the running maximum after it (a prefix maximum of the ceilings), its
    probability and its value weight depend on the keys before it only through that
    maximum, so all of them are computed together. What stays sequential is the rescale,
    which rounds: it happens where the running maximum rises, splitting each (query,
    head)'s keys into segments. Within a segment ``l`` and ``o`` only add, so a
    segment's sums are exact sums and products; the rescale-then-add steps then run once
    per segment, in order, as the key loop runs them.
    """
    cfg = cache.config
    keys = int(np.max(positions)) + 1
    active = (np.arange(keys) <= positions[:, None])[:, None, :]      # (T, 1, n): causal mask
    kv_of_head = np.arange(q_codes.shape[1]) // cfg.kv_group

    def per_head(table):                            # a scale table's (n, kv heads) -> (H, n)
        return table[layer, :keys][:, kv_of_head].T

    qm, qe = q_score_scale
    dot = _per_kv_head(q_codes.astype(np.float32), operands[0][..., :keys], cfg.kv_group,
                       ACT_CODE_PEAK)                          # (T, H, n), |dot| <= 2**22
    score = saturate(shift_round(dot * qm[..., None] * per_head(cache.k_scale[0]),
                                 -(qe[..., None] + per_head(cache.k_scale[1])) - F_SCORE))
    ceiling = ((score + (1 << F_SCORE) - 1) >> F_SCORE) << F_SCORE
    running = np.maximum.accumulate(ceiling, axis=-1)
    prob = np.where(active, exp2_neg(running - score), 0)             # Q1.15
    weight = np.where(active, shift_round(prob * per_head(cache.v_scale[0]),
                                          15 - per_head(cache.v_scale[1])), 0)
    rise = np.zeros_like(running)                   # the rescale's shift at each key
    rise[..., 1:] = np.where(active[..., 1:], (running[..., 1:] - running[..., :-1]) >> F_SCORE, 0)
    segment = np.cumsum(rise > 0, axis=-1)          # each key's segment, 0 from key 0
    starts = _segment_starts(rise, segment)
    # Per segment: the shift at its first key, and its probabilities' sum (a difference
    # of prefix sums at its first key and the next segment's).
    shifts = np.take_along_axis(np.pad(rise, ((0, 0), (0, 0), (0, 1))), starts[..., :-1], -1)
    prefix = np.pad(np.cumsum(prob, axis=-1), ((0, 0), (0, 0), (1, 0)))
    probs = np.diff(np.take_along_axis(prefix, starts, -1), axis=-1)
    sums = _segment_sums(weight, segment, operands[1][:, :keys], cfg.kv_group)
    total = np.zeros(prob.shape[:2], dtype=np.int64)
    acc = np.zeros(q_codes.shape, dtype=np.int64)
    for index in range(sums.shape[2]):
        total = shift_round(total, shifts[..., index]) + probs[..., index]
        acc = shift_round(acc, shifts[..., index, None]) + sums[:, :, index]
    return _normalize(acc, total)


def _segment_starts(rise, segment) -> np.ndarray:
    """(T, H, S + 1): the first key of each of the S segments of the block, then the
    number of keys (also where a (query, head) with fewer segments has none)."""
    starts = np.full(segment.shape[:2] + (int(segment.max()) + 2,), segment.shape[-1])
    starts[..., 0] = 0
    token, head, key = np.nonzero(rise > 0)
    starts[token, head, segment[token, head, key]] = key
    return starts


def _segment_sums(weight, segment, values, group: int) -> np.ndarray:
    """Per (query, head) and segment, the exact sum of the value weights times the value
    codes over the segment's keys, (T, H, S, d) int64 (zero where a (query, head) has
    fewer segments). Each segment's weights form a row of a product with the values,
    a few segments at a time to bound the rows' memory."""
    count = int(segment.max()) + 1
    step = max(1, _SEGMENT_ELEMENTS // segment.size)
    # Weights are at most 2**15 * absmax(v) / 2**15 <= 2**31; the data gives the bound.
    weight_peak = max(1, int(weight.max()))
    weight = weight.astype(np.float64)
    parts = []
    for first in range(0, count, step):
        members = segment[..., None, :] == np.arange(first, min(first + step, count))[:, None]
        parts.append(_per_kv_head(np.where(members, weight[..., None, :], 0.0), values, group,
                                  weight_peak))
    return np.concatenate(parts, axis=2)


def _per_kv_head(rows, matrix, group: int, rows_peak: int) -> np.ndarray:
    """``rows`` (T, H, ..., K) times each head's kv head's ``matrix`` ((kv heads, K, M),
    int8 codes in the rows' float type), exactly (:func:`tritium.sim.exact.exact_matmul`):
    (T, H, ..., M) int64."""
    tokens, heads = rows.shape[:2]
    kv_heads, inner = heads // group, rows.shape[2:-1]
    grouped = rows.reshape(tokens, kv_heads, -1, rows.shape[-1]).transpose(1, 0, 2, 3)
    product = exact_matmul(grouped.reshape(kv_heads, -1, rows.shape[-1]), matrix, rows_peak,
                           ACT_CODE_PEAK)
    product = product.reshape(kv_heads, tokens, -1, product.shape[-1]).transpose(1, 0, 2, 3)
    return product.reshape(tokens, heads, *inner, product.shape[-1])


def _normalize(acc, total) -> np.ndarray:
    """``out = sat32(shift_round(acc * z.m, -(z.e + 15)))`` with ``z = reciprocal(127 * l)``:
    Q.12. ``acc * z.m`` (|acc| < 2**55, a 16-bit mantissa) needs up to 71 bits, so it is
    split at bit 16: with ``acc = hi * 2**16 + lo`` (0 <= lo < 2**16) and a shift s >= 17,
    ``(acc * m + 2**(s-1)) >> s == (hi * m + ((lo * m) >> 16) + 2**(s-17)) >> (s - 16)``,
    every term inside int64. A shift below 17 needs ``l <= 516``, which a query never has
    (the key that sets its final maximum adds P > 2**14, so s >= 21); such elements go
    through Python integers."""
    inv_m, inv_e = reciprocal(127 * total)
    mantissa = np.broadcast_to(inv_m[..., None], acc.shape)
    shift = np.broadcast_to(-(inv_e[..., None] + 15), acc.shape)
    out = shift_round((acc >> 16) * mantissa + (((acc & 0xFFFF) * mantissa) >> 16), shift - 16)
    wide = shift < 17
    if wide.any():
        out[wide] = [_shift_round_int(int(a) * int(m), s)
                     for a, m, s in zip(acc[wide], mantissa[wide], shift[wide])]
    return saturate(out)


def _shift_round_int(value: int, shift: int) -> int:
    """shift_round on Python integers of any width, kept within +-2**40 (it saturates to
    int32 next)."""
    value, shift = int(value), int(shift)
    value = value << min(-shift, 40) if shift <= 0 else (value + (1 << (shift - 1))) >> shift
    return max(min(value, 2 ** 40), -2 ** 40)


def ffn_activation(gate: np.ndarray, up: np.ndarray, activation: str) -> np.ndarray:
    """SiLU(gate) * up or ReLU(gate)**2 * up, all Q.12 int32."""
    if activation == "silu":
        act = shift_round(gate * sigmoid(gate), 15)
    else:
        positive = np.maximum(gate, 0)
        act = saturate(shift_round(positive * positive, F_ACT))
    return saturate(shift_round(act * up, F_ACT))


class GoldenModel:
    """Prefill and decode on the integer model; logits from the integer LM head."""

    def __init__(self, model, qmodel: QuantizedModel = None):
        self.model = model
        self.config = model.config
        self.qmodel = qmodel or QuantizedModel(model)

    def new_cache(self) -> GoldenCache:
        return GoldenCache(self.config)

    def prepare(self, progress=None):
        """Make the weights' float32 operands and the quantized LM head now rather than
        at the first token (a full-size model takes seconds). ``progress(done, total)``,
        if given, hears each layer, then the head."""
        total = len(self.qmodel.layers) + 1
        for index, layer in enumerate(self.qmodel.layers):
            for quantized in layer.linears.values():
                quantized.operand               # made at its first use, then kept
            if progress is not None:
                progress(index + 1, total)
        self.qmodel.head._operand
        if progress is not None:
            progress(total, total)

    def forward_hidden(self, token_ids, cache: GoldenCache) -> np.ndarray:
        """Run tokens after the cache's; return the final int32 Q.12 hidden states.

        A long prompt runs in chunks of :data:`PREFILL_CHUNK` tokens through every layer:
        the results are the same bit for bit (a token sees the cache of every token
        before it either way), and a chunk's activations stay in the CPU's caches."""
        ids = np.asarray(token_ids, dtype=np.int64)
        chunks = [self._run(ids[start:start + PREFILL_CHUNK], cache)
                  for start in range(0, len(ids), PREFILL_CHUNK)]
        return np.concatenate(chunks) if len(chunks) != 1 else chunks[0]

    def _run(self, ids, cache: GoldenCache) -> np.ndarray:
        positions = np.arange(cache.length, cache.length + len(ids))
        x = embed(self.model, ids)
        for i, layer in enumerate(self.qmodel.layers):
            x = self.layer(i, layer, x, positions, cache)
        cache.length += len(ids)
        return x

    def forward(self, token_ids, cache: GoldenCache, logits: str = "all") -> np.ndarray:
        """Run tokens after the cache's; return the logits of every token (``"all"``,
        (tokens, vocab)) or of the last one only (``"last"``, (1, vocab)): the head
        is the costly part for a large vocabulary, and greedy decoding needs one row."""
        check_logit_rows(logits)                        # before the cache changes
        hidden = self.forward_hidden(token_ids, cache)
        return final_logits(self.qmodel, logit_rows(hidden, logits))

    def layer(self, index, layer: QuantizedLayer, x, positions, cache: GoldenCache):
        cfg, q = self.config, self.qmodel
        tokens = x.shape[0]
        lin = layer.linears

        codes, scale = norm_quant(x, layer.attn_norm, q.eps[cfg.hidden])
        heads = linear(codes, scale, lin["wq"]).reshape(tokens, cfg.heads, cfg.head_dim)
        keys = linear(codes, scale, lin["wk"]).reshape(tokens, cfg.kv_heads, cfg.head_dim)
        values = linear(codes, scale, lin["wv"]).reshape(tokens, cfg.kv_heads, cfg.head_dim)
        attn = attention_step(cfg, (q.rope_cos, q.rope_sin), cache, index, positions, heads,
                              keys, values, q.score_scale)

        codes, scale = norm_quant(attn.reshape(tokens, cfg.q_dim), layer.attn_sub_norm,
                                  q.eps[cfg.q_dim])
        x = saturate(x + linear(codes, scale, lin["wo"]))

        codes, scale = norm_quant(x, layer.ffn_norm, q.eps[cfg.hidden])
        hidden = ffn_activation(linear(codes, scale, lin["w_gate"]),
                                linear(codes, scale, lin["w_up"]), cfg.activation)
        codes, scale = norm_quant(hidden, layer.ffn_sub_norm, q.eps[cfg.ffn])
        return saturate(x + linear(codes, scale, lin["w_down"]))
