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

from tritium.hw.config import HeadConfig
from tritium.hw.numerics import F_SCORE, GAIN_MAX, ROPE_FRAC, rope_table
from .fixed import (F_ACT, normalize_even, reciprocal, rsqrt, saturate, scale_apply,
                    scale_from_float, scale_from_int, scale_mul, shift_round, exp2_neg,
                    sigmoid)
from .head import head_logits, head_scores, head_topk, quantize_head
from .tlmm import int_matmul
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


@dataclass(frozen=True)
class QuantizedLinear:
    weights: np.ndarray         # (N, K) int8 ternary codes
    out_scale: tuple            # scale: beta * sqrt(K) * 2**(F_ACT - gain frac) / 127


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
                linears[name] = QuantizedLinear(tensor.codes.astype(np.int64),
                                                scale_from_float(value))
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
    rotation = _Rotation(config, *tables)
    q_codes, q_scale = act_codes(rope(heads, positions, rotation))
    k_codes, k_scale = act_codes(rope(keys, positions, rotation))
    v_codes, v_scale = act_codes(values)
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


def act_codes(values: np.ndarray):
    """Per-row absmax int8 quantization: codes and the row's absmax as a scale.

    codes = clamp(round(values * 127 / absmax), -128, 127) with the reciprocal from
    the table; |values| < 2**46.
    """
    peak = np.max(np.abs(values), axis=-1)
    inverse = scale_mul(reciprocal(peak), scale_from_int(127))
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
    """Ternary matmul of int8 codes, dequantized to int32 Q19.12."""
    acc = int_matmul(codes, layer_linear.weights)
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
        self.k_codes = np.zeros(shape + (config.head_dim,), dtype=np.int64)
        self.v_codes = np.zeros_like(self.k_codes)
        self.k_scale = (np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64))
        self.v_scale = (np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64))
        self.length = 0

    def store(self, layer, positions, k_codes, k_scale, v_codes, v_scale):
        self.k_codes[layer, positions] = k_codes
        self.v_codes[layer, positions] = v_codes
        for cached, new in ((self.k_scale, k_scale), (self.v_scale, v_scale)):
            cached[0][layer, positions], cached[1][layer, positions] = new


def attention(q_codes, q_scale, cache: GoldenCache, layer: int, positions: np.ndarray,
              score_scale) -> np.ndarray:
    """Causal attention with an online softmax over keys in ascending order.

    q_codes: (T, heads, d) int8; q_scale: scale per (T, heads). Returns (T, heads, d)
    int32 Q.12. Each (query, head) keeps a running integer max ``m`` (a multiple of
    1.0 in log2 units, so rescaling is a shift), a running sum ``l`` of Q1.15
    probabilities and an accumulator ``o``; see docs/numerics.md section 6.
    """
    cfg = cache.config
    tokens, heads, _ = q_codes.shape
    kv_of_head = np.arange(heads) // cfg.kv_group
    qm, qe = scale_mul(q_scale, score_scale)                   # (T, H)
    running_max = np.zeros((tokens, heads), dtype=np.int64)
    total = np.zeros((tokens, heads), dtype=np.int64)
    acc = np.zeros(q_codes.shape, dtype=np.int64)
    for key in range(int(positions.max()) + 1):
        active = (positions >= key)[:, None]                  # (T, 1): causal mask
        k_codes = cache.k_codes[layer, key][kv_of_head]        # (H, d)
        km = cache.k_scale[0][layer, key][kv_of_head]
        ke = cache.k_scale[1][layer, key][kv_of_head]
        dot = np.sum(q_codes * k_codes[None], axis=-1)         # (T, H)
        score = saturate(shift_round(dot * qm * km, -(qe + ke) - F_SCORE))
        ceiling = ((score + (1 << F_SCORE) - 1) >> F_SCORE) << F_SCORE
        new_max = np.where(key == 0, ceiling, np.maximum(running_max, ceiling))
        rescale = (new_max - running_max) >> F_SCORE
        total = np.where(active, shift_round(total, rescale), total)
        acc = np.where(active[..., None], shift_round(acc, rescale[..., None]), acc)
        running_max = np.where(active, new_max, running_max)
        prob = exp2_neg(running_max - score)                  # Q1.15
        vm = cache.v_scale[0][layer, key][kv_of_head]
        ve = cache.v_scale[1][layer, key][kv_of_head]
        weight = shift_round(prob * vm, 15 - ve)              # p * absmax(v), Q.12
        v_codes = cache.v_codes[layer, key][kv_of_head]
        total = np.where(active, total + prob, total)
        acc = np.where(active[..., None], acc + weight[..., None] * v_codes[None], acc)
    # out = acc * 2**15 / (127 * total): acc (< 2**55) times a 16-bit mantissa needs
    # more than int64, so this one product is formed with Python integers.
    inv_m, inv_e = reciprocal(127 * total)
    product = acc.astype(object) * inv_m[..., None].astype(object)
    shift = -(inv_e[..., None] + 15)
    out = np.vectorize(_shift_round_int, otypes=[np.int64])(product, shift)
    return saturate(out)


def _shift_round_int(value: int, shift: int) -> int:
    value, shift = int(value), int(shift)
    if shift <= 0:
        return max(min(value << min(-shift, 40), 2 ** 40), -2 ** 40)
    return (value + (1 << (shift - 1))) >> shift


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

    def forward_hidden(self, token_ids, cache: GoldenCache) -> np.ndarray:
        """Run tokens after the cache's; return the final int32 Q.12 hidden states."""
        ids = np.asarray(token_ids, dtype=np.int64)
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
