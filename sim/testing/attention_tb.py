"""Stimulus and expectations for the attention gateware, from the golden model.

Shared by the ``amaranth.sim`` tests, the cocotb tests and ``bench/attention.py``: a
golden KV cache filled with random (or extreme) codes and scales, the key beats and
query payloads the attention core takes, and the outputs the golden ``attention``
gives for them.
"""

import numpy as np

from tritium.hw.attention.kvcache import KVLayout
from tritium.hw.config import AttentionConfig, ModelConfig
from tritium.hw.fixedpoint import scale_layout
from tritium.hw.layouts import kv_record_layout
from ..golden.fixed import scale_from_float, scale_from_int
from ..golden.model import LOG2E, GoldenCache, attention

__all__ = ["model_shape", "score_scale", "random_scales", "fill_cache", "key_beats",
           "query_payload", "golden_outputs", "random_qkv", "qkv_beats", "output_beats",
           "cache_image"]


def model_shape(config: AttentionConfig, **fields) -> ModelConfig:
    """A ModelConfig with the attention shape of ``config`` (for the golden cache)."""
    base = dict(name="attention-test", vocab_size=2, hidden=config.heads * config.head_dim,
                layers=config.layers, heads=config.heads, kv_heads=config.kv_heads,
                head_dim=config.head_dim, ffn=2, max_context=config.capacity)
    return ModelConfig(**{**base, **fields})


def score_scale(head_dim: int):
    """The host-compiled score scale (as ``QuantizedModel.score_scale``)."""
    return scale_from_float(LOG2E / (127.0 ** 2 * 2.0 ** 24 * np.sqrt(head_dim)))


def random_scales(rng, shape, max_bits: int = 31):
    """Absmax scales of random Q.12 peaks of up to ``max_bits`` bits."""
    bits = rng.integers(1, max_bits + 1, shape)
    peaks = rng.integers(0, 2 ** 62, shape) >> (62 - bits)
    return scale_from_int(np.maximum(peaks, 1))


def fill_cache(cache: GoldenCache, rng, layer: int, length: int, extreme: bool = False):
    """Random K/V codes and scales for positions ``0 .. length-1`` of ``layer``.

    ``extreme`` makes every code +-127 with the largest scales, so scores saturate.
    """
    cfg = cache.config
    shape = (length, cfg.kv_heads)
    for codes, scales in ((cache.k_codes, cache.k_scale), (cache.v_codes, cache.v_scale)):
        if extreme:
            codes[layer, :length] = 127 * rng.choice([-1, 1], shape + (cfg.head_dim,))
            m, e = scale_from_int(np.full(shape, 2 ** 31 - 1))
        else:
            codes[layer, :length] = rng.integers(-127, 128, shape + (cfg.head_dim,))
            m, e = random_scales(rng, shape)
        scales[0][layer, :length], scales[1][layer, :length] = m, e


def cache_image(cache: GoldenCache, layout: KVLayout, layer: int, length: int) -> list:
    """The memory image of records ``0 .. length-1`` of ``layer``: one ``(word address,
    bytes)`` per kv head, each record ``kv_record_layout`` padded to whole bus words."""
    cfg = layout.config
    fields = dict(kv_record_layout(cfg))
    record_bytes = layout.words_per_record * layout.memory.bytes_per_word
    images = []
    for kv_head in range(cfg.kv_heads):
        records = []
        for token in range(length):
            bits = 0
            for name, codes in (("k", cache.k_codes), ("v", cache.v_codes)):
                raw = codes[layer, token, kv_head].astype(np.uint8).tobytes()
                bits |= int.from_bytes(raw, "little") << fields[name].offset
            for name, scale in (("k_scale", cache.k_scale), ("v_scale", cache.v_scale)):
                value = scale_layout.const({"m": int(scale[0][layer, token, kv_head]),
                                            "e": int(scale[1][layer, token, kv_head])})
                bits |= value.as_bits() << fields[name].offset
            records.append(bits.to_bytes(record_bytes, "little"))
        images.append((layout.address(layer, kv_head), b"".join(records)))
    return images


def key_beats(cache: GoldenCache, config: AttentionConfig, layer: int, kv_head: int,
              count: int) -> list:
    """The key beats of one pass over keys ``0 .. count-1`` of a kv head."""
    step = config.dims_per_cycle
    beats = []
    for key in range(count):
        scales = {name: {"m": int(s[0][layer, key, kv_head]), "e": int(s[1][layer, key, kv_head])}
                  for name, s in (("k_scale", cache.k_scale), ("v_scale", cache.v_scale))}
        for start in range(0, config.head_dim, step):
            beats.append({
                "k": cache.k_codes[layer, key, kv_head, start:start + step].tolist(),
                "v": cache.v_codes[layer, key, kv_head, start:start + step].tolist(),
                **scales, "index": key,
                "last": int(key == count - 1 and start + step == config.head_dim)})
    return beats


def query_payload(codes, scale, position: int, last: bool) -> dict:
    return {"codes": [int(c) for c in codes], "scale": {"m": int(scale[0]), "e": int(scale[1])},
            "position": int(position), "last": int(last)}


def golden_outputs(cache: GoldenCache, layer: int, q_codes, q_scale, positions) -> np.ndarray:
    """Golden attention outputs (T, heads, head_dim) for queries at ``positions``."""
    return attention(np.asarray(q_codes), q_scale, cache, layer, np.asarray(positions),
                     score_scale(cache.config.head_dim))


def random_qkv(config: ModelConfig, rng, tokens: int, bits: int = 20):
    """Random Q, K and V linear outputs (int32 Q.12) of up to ``bits`` bits for ``tokens``."""
    def draw(heads):
        return rng.integers(-2 ** bits, 2 ** bits, (tokens, heads, config.head_dim))
    return draw(config.heads), draw(config.kv_heads), draw(config.kv_heads)


def qkv_beats(heads, keys, values, lanes: int) -> list:
    """The attention block's input: per token, its Q, K and V heads, ``lanes`` per beat."""
    beats = []
    for token in range(heads.shape[0]):
        for vector in (*heads[token], *keys[token], *values[token]):
            beats += _vector_beats(vector, lanes)
    return beats


def output_beats(outputs, lanes: int) -> list:
    """The attention block's output: per token, every head's values, ``last`` per token."""
    return [beat for token in outputs for beat in _vector_beats(token.reshape(-1), lanes)]


def _vector_beats(vector, lanes: int) -> list:
    return [{"values": [int(v) for v in vector[i:i + lanes]],
             "last": int(i + lanes == len(vector))} for i in range(0, len(vector), lanes)]
