"""Float64 reference of the quantized BitNet b1.58 model (docs/model_import.md).

This is "what the math means": ternary weights and int8 per-token activation
quantization exactly as BitNet b1.58 defines them, and everything else (RMSNorm, RoPE,
softmax, SiLU, residual) in float64 without approximation. The golden model
(:mod:`tritium.sim.golden`) replaces the float parts by the hardware's fixed-point
formats; comparing the two measures what those formats cost.
"""

import numpy as np

from .exact import ternary_matmul, ternary_operand

__all__ = ["act_quant", "rms_norm", "rope_angles", "apply_rope", "lm_head", "logit_rows",
           "check_logit_rows", "LOGIT_ROWS", "ReferenceCache", "ReferenceModel"]

LOGIT_ROWS = ("all", "last")


def act_quant(x: np.ndarray):
    """Per-token absmax int8 quantization (BitNet's activation_quant): the codes
    ``clamp(round(x * s), -128, 127)`` and ``s = 127 / max(max|x|, 1e-5)`` per token,
    (tokens, 1); the quantized activations are ``codes / s``."""
    scale = 127.0 / np.maximum(np.max(np.abs(x), axis=-1, keepdims=True), 1e-5)
    return np.clip(np.rint(x * scale), -128, 127), scale


def rms_norm(x: np.ndarray, gain: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * gain


def rope_angles(positions: np.ndarray, head_dim: int, theta: float) -> np.ndarray:
    """Rotation angle of every (position, frequency) pair, shape (len(positions), head_dim/2)."""
    inv_freq = theta ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    return np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]


def rope_pairs(head_dim: int, pairing: str):
    """Indices (a, b) of the dims that rotate together for frequency i = 0..head_dim/2-1."""
    half = head_dim // 2
    if pairing == "half":
        return np.arange(half), np.arange(half) + half
    return np.arange(0, head_dim, 2), np.arange(1, head_dim, 2)


def apply_rope(x: np.ndarray, positions: np.ndarray, theta: float, pairing: str) -> np.ndarray:
    """Rotate ``x`` of shape (tokens, heads, head_dim) by its tokens' positions."""
    angles = rope_angles(positions, x.shape[-1], theta)[:, None, :]
    cos, sin = np.cos(angles), np.sin(angles)
    a, b = rope_pairs(x.shape[-1], pairing)
    out = np.empty_like(x)
    out[..., a] = x[..., a] * cos - x[..., b] * sin
    out[..., b] = x[..., a] * sin + x[..., b] * cos
    return out


def check_logit_rows(which: str) -> str:
    """Raise ``ValueError`` unless ``which`` is one of :data:`LOGIT_ROWS`."""
    if which not in LOGIT_ROWS:
        raise ValueError(f"logits must be one of {LOGIT_ROWS}, not {which!r}")
    return which


def logit_rows(hidden: np.ndarray, which: str) -> np.ndarray:
    """The rows of ``hidden`` whose logits a forward pass returns: ``"all"``, or
    ``"last"`` (the last token's only, for greedy decoding)."""
    return hidden if check_logit_rows(which) == "all" else hidden[-1:]


def lm_head(model, hidden: np.ndarray, head: np.ndarray = None) -> np.ndarray:
    """Final RMSNorm and LM head in float64: (tokens, hidden) -> (tokens, vocab).

    ``head``: the model's head already in float64 (:class:`ReferenceModel` keeps one, so
    that no call recasts the whole head); cast here if not given. The golden model's
    head is the integer one of ``sim/golden/head.py`` instead (docs/numerics.md
    section 10).
    """
    normed = rms_norm(hidden.astype(np.float64), model.output_norm.astype(np.float64),
                      model.config.norm_eps)
    head = model.head.astype(np.float64) if head is None else head
    # One matrix-vector product per token: a batched product may take another BLAS path
    # and round differently, and a token's logits must not depend on its batch.
    return np.stack([head @ row for row in normed]) if len(normed) else \
        np.zeros((0, head.shape[0]))


class ReferenceCache:
    """Keys (after RoPE) and values of every layer, float64, shape (tokens, kv_heads, head_dim)."""

    def __init__(self, config):
        self.config = config
        empty = np.zeros((0, config.kv_heads, config.head_dim))
        self.keys = [empty] * config.layers
        self.values = [empty] * config.layers

    @property
    def length(self) -> int:
        return self.keys[0].shape[0]


class ReferenceModel:
    """Float64 forward pass of a :class:`tritium.host.model.Model`."""

    def __init__(self, model):
        self.model = model
        self.config = model.config
        self._linears = []          # per layer, made by prepare()
        self._head = None

    def prepare(self, progress=None):
        """Make what the forward pass multiplies with, once (it happens at the first
        forward pass otherwise; a full-size model takes seconds): each linear as its
        ternary codes in float32, for exact products, and its scale (4 bytes per weight,
        where float64 weights would take 8), and the head in float64 (not recast by every
        call of :func:`lm_head`). ``progress(done, total)``, if given, hears each layer,
        then the head."""
        total = len(self.model.layers) + 1
        for layer in self.model.layers[len(self._linears):]:
            self._linears.append({name: (ternary_operand(getattr(layer, name).codes),
                                         getattr(layer, name).scale)
                                  for name in self.config.linear_shapes()})
            if progress is not None:
                progress(len(self._linears), total)
        if self._head is None:
            self._head = self.model.head.astype(np.float64)
            if progress is not None:
                progress(total, total)

    def new_cache(self) -> ReferenceCache:
        return ReferenceCache(self.config)

    def forward(self, token_ids, cache: ReferenceCache, logits: str = "all") -> np.ndarray:
        """Run ``token_ids`` after the cache's tokens; return the logits of every token
        (``"all"``, (tokens, vocab)) or of the last one (``"last"``, (1, vocab))."""
        check_logit_rows(logits)                        # before the cache changes
        self.prepare()
        ids = np.asarray(token_ids, dtype=np.int64)
        positions = np.arange(cache.length, cache.length + len(ids))
        x = self.model.embedding[ids].astype(np.float64)
        for i, layer in enumerate(self.model.layers):
            x = self._layer(i, layer, x, positions, cache)
        return lm_head(self.model, logit_rows(x, logits), self._head)

    def _layer(self, i, layer, x, positions, cache):
        cfg, linears = self.config, self._linears[i]
        eps = cfg.norm_eps
        tokens = x.shape[0]

        def linear(inp, name):
            # BitLinear = (codes / s) @ (W_codes * scale).T: the integer product of the
            # codes is exact (tritium.sim.exact), then one rounding for the two scales.
            codes, scale = act_quant(inp)
            operand, weight_scale = linears[name]
            return ternary_matmul(codes, operand) * (weight_scale / scale)

        h = rms_norm(x, layer.attn_norm, eps)
        q = linear(h, "wq").reshape(tokens, cfg.heads, cfg.head_dim)
        k = linear(h, "wk").reshape(tokens, cfg.kv_heads, cfg.head_dim)
        v = linear(h, "wv").reshape(tokens, cfg.kv_heads, cfg.head_dim)
        q = apply_rope(q, positions, cfg.rope_theta, cfg.rope_pairing)
        k = apply_rope(k, positions, cfg.rope_theta, cfg.rope_pairing)
        cache.keys[i] = np.concatenate([cache.keys[i], k])
        cache.values[i] = np.concatenate([cache.values[i], v])
        keys = np.repeat(cache.keys[i], cfg.kv_group, axis=1)      # (ctx, heads, d)
        values = np.repeat(cache.values[i], cfg.kv_group, axis=1)
        scores = np.einsum("thd,shd->hts", q, keys) / np.sqrt(cfg.head_dim)
        mask = np.arange(keys.shape[0])[None, :] > positions[:, None]
        scores = np.where(mask[None], -np.inf, scores)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        attn = np.einsum("hts,shd->thd", probs, values).reshape(tokens, cfg.q_dim)
        x = x + linear(rms_norm(attn, layer.attn_sub_norm, eps), "wo")

        h = rms_norm(x, layer.ffn_norm, eps)
        gate, up = linear(h, "w_gate"), linear(h, "w_up")
        if cfg.activation == "silu":
            act = gate * (0.5 + 0.5 * np.tanh(0.5 * gate))     # sigmoid without overflow
        else:
            act = np.square(np.maximum(gate, 0.0))
        return x + linear(rms_norm(act * up, layer.ffn_sub_norm, eps), "w_down")
