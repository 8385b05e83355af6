"""Hugging Face BitNet checkpoints: a directory with ``config.json`` and ``*.safetensors``.

Two layouts exist (docs/model_import.md, "The model"):

- ``BitnetForCausalLM`` (1bitLLM, e.g. ``bitnet_b1_58-large``): latent fp16 weights,
  sub-norms ``self_attn.inner_attn_ln`` and ``mlp.ffn_layernorm``, untied ``lm_head``,
  SiLU. Its config class is a copy of LlamaConfig, whence its defaults.
- ``BitNetForCausalLM`` (Microsoft, ``bitnet-b1.58-2B-4T``): sub-norms
  ``self_attn.attn_sub_norm`` and ``mlp.ffn_sub_norm``, ReLU^2, GQA. The ``-bf16``
  variant holds latent bf16 weights; the main variant holds packed ternary weights.

Latent weights are quantized here by BitNet's ``weight_quant``. Packed weights are
uint8 of shape (ceil(out/4), in): bits 2i..2i+1 of packed row r hold code + 1 of row
i * ceil(out/4) + r (transformers' ``integrations/bitnet.py``, ``unpack_weights``).
Their ``weight_scale`` is a divisor for transformers' ``BitLinear`` (the default
``linear_class``) and a multiplier for ``AutoBitLinear`` (``linear_class:
"autobitlinear"``); mlx-lm reads it the same way. Both layouts use rotate-half RoPE
on unpermuted Q/K rows.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritium.hw.config import ModelConfig
from ..errors import ModelFormatError
from ..model import Layer, Model, TernaryTensor
from .common import check_shape, float_tensor, make_config, quantize_latent, read_json_object
from .safetensors_file import FLOAT_DTYPES, SafetensorsCheckpoint

__all__ = ["load_hf", "read_hf_config", "unpack_codes", "HF_LAYOUTS"]


@dataclass(frozen=True)
class HFLayout:
    attn_sub_norm: str
    ffn_sub_norm: str
    defaults: dict          # what the architecture's config class assumes for absent keys


HF_LAYOUTS = {
    "BitnetForCausalLM": HFLayout(
        attn_sub_norm="self_attn.inner_attn_ln", ffn_sub_norm="mlp.ffn_layernorm",
        defaults={"hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                  "max_position_embeddings": 2048, "tie_word_embeddings": False}),
    "BitNetForCausalLM": HFLayout(
        attn_sub_norm="self_attn.attn_sub_norm", ffn_sub_norm="mlp.ffn_sub_norm",
        defaults={"hidden_act": "relu2", "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                  "max_position_embeddings": 2048, "tie_word_embeddings": False}),
}

ACTIVATIONS = {"silu": "silu", "swish": "silu", "relu2": "relu2"}
REQUIRED_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "vocab_size")
LINEAR_PREFIXES = {"wq": "self_attn.q_proj", "wk": "self_attn.k_proj",
                   "wv": "self_attn.v_proj", "wo": "self_attn.o_proj",
                   "w_gate": "mlp.gate_proj", "w_up": "mlp.up_proj", "w_down": "mlp.down_proj"}
PACKED_CODES_PER_BYTE = 4


def read_hf_config(directory) -> ModelConfig:
    """The ModelConfig of a Hugging Face BitNet directory, from config.json alone."""
    return _read_config(Path(directory))[0]


def load_hf(directory, progress=None) -> Model:
    """Read a Hugging Face BitNet directory (not yet validated: see ``load_model``);
    ``progress(done, total)``, if given, hears each decoder layer read."""
    directory = Path(directory)
    config, layout, scale_is_divisor = _read_config(directory)
    checkpoint = SafetensorsCheckpoint(directory)

    embedding_shape = (config.vocab_size, config.hidden)
    embedding = _float(checkpoint, "model.embed_tokens.weight", embedding_shape)
    lm_head = None if config.tied_embedding else \
        _float(checkpoint, "lm_head.weight", embedding_shape)
    layers = []
    for i in range(config.layers):
        layers.append(_layer(checkpoint, config, layout, i, scale_is_divisor))
        if progress is not None:
            progress(i + 1, config.layers)
    output_norm = _float(checkpoint, "model.norm.weight", (config.hidden,))
    return Model(config, embedding, layers, output_norm, lm_head)


def _read_config(directory: Path) -> tuple:
    """(ModelConfig, HFLayout, whether weight_scale divides) from config.json."""
    config_path = directory / "config.json"
    hf_config = read_json_object(config_path)
    layout = _layout(config_path, hf_config)
    config = _model_config(config_path, hf_config, layout, name=directory.resolve().name)
    return config, layout, _weight_scale_is_divisor(hf_config)


def _layout(path: Path, hf_config: dict) -> HFLayout:
    architectures = hf_config.get("architectures")
    if not isinstance(architectures, list) or len(architectures) != 1:
        raise ModelFormatError(f"{path}: 'architectures' must list one architecture, "
                               f"not {architectures!r}")
    architecture = architectures[0]
    if architecture not in HF_LAYOUTS:
        raise ModelFormatError(f"{path}: architecture {architecture!r} is not supported "
                               f"(expected one of {', '.join(HF_LAYOUTS)})")
    return HF_LAYOUTS[architecture]


def _model_config(path: Path, hf_config: dict, layout: HFLayout, name: str):
    missing = [key for key in REQUIRED_KEYS if key not in hf_config]
    if missing:
        raise ModelFormatError(f"{path}: missing key(s) {', '.join(missing)}")
    values = {**layout.defaults, **hf_config}
    _reject_unsupported(path, values)
    _check_types(path, values)
    hidden, heads = values["hidden_size"], values["num_attention_heads"]
    head_dim = values.get("head_dim")
    if head_dim is None:
        head_dim = _divide(path, hidden, heads)
    kv_heads = values.get("num_key_value_heads")
    activation = ACTIVATIONS.get(str(values["hidden_act"]))
    if activation is None:
        raise ModelFormatError(f"{path}: hidden_act {values['hidden_act']!r} is not "
                               f"supported (expected one of {', '.join(ACTIVATIONS)})")
    return make_config(
        path, name=name, vocab_size=values["vocab_size"], hidden=hidden,
        layers=values["num_hidden_layers"], heads=heads,
        kv_heads=heads if kv_heads is None else kv_heads, head_dim=head_dim,
        ffn=values["intermediate_size"], activation=activation,
        rope_theta=_rope_theta(values), rope_pairing="half",
        norm_eps=values["rms_norm_eps"], max_context=values["max_position_embeddings"],
        tied_embedding=bool(values["tie_word_embeddings"]))


# config.json keys and the JSON types they must have (bool is not an int here).
_INTEGER_KEYS = REQUIRED_KEYS + ("num_key_value_heads", "head_dim", "max_position_embeddings")
_BOOLEAN_KEYS = ("tie_word_embeddings", "attention_bias", "mlp_bias")


def _check_types(path: Path, values: dict):
    """Refuse values of the wrong JSON type, which Python would otherwise coerce
    (``bool("false")`` is True)."""
    for key in _INTEGER_KEYS:
        value = values.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ModelFormatError(f"{path}: {key} must be an integer, not {value!r}")
    for key in _BOOLEAN_KEYS:
        value = values.get(key)
        if value is not None and not isinstance(value, bool):
            raise ModelFormatError(f"{path}: {key} must be true or false, not {value!r}")
    quantization = values.get("quantization_config")
    if quantization is not None and not isinstance(quantization, dict):
        raise ModelFormatError(f"{path}: quantization_config must be a JSON object, not "
                               f"{quantization!r}")
    if not isinstance(values.get("hidden_act"), str):
        raise ModelFormatError(f"{path}: hidden_act must be a string, not "
                               f"{values.get('hidden_act')!r}")


def _divide(path: Path, hidden, heads) -> int:
    if not (isinstance(hidden, int) and isinstance(heads, int) and heads > 0
            and hidden % heads == 0):
        raise ModelFormatError(f"{path}: bad model config: hidden_size {hidden!r} is not "
                               f"a multiple of num_attention_heads {heads!r}")
    return hidden // heads


def _rope_theta(values: dict):
    # Newer transformers releases move rope_theta into a rope_parameters dict.
    parameters = values.get("rope_parameters")
    if isinstance(parameters, dict) and "rope_theta" in parameters:
        return parameters["rope_theta"]
    return values["rope_theta"]


def _reject_unsupported(path: Path, values: dict):
    """Features the hardware does not implement: fail rather than run a different model."""
    for key in ("rope_scaling", "rope_parameters"):
        scaling = values.get(key)
        if isinstance(scaling, dict):
            kind = scaling.get("rope_type", scaling.get("type", "default"))
            if kind != "default" and scaling.get("factor", 1.0) != 1.0:
                raise ModelFormatError(f"{path}: RoPE scaling {kind!r} is not supported")
    if values.get("attention_bias") or values.get("mlp_bias"):
        raise ModelFormatError(f"{path}: linear biases are not supported "
                               f"(attention_bias / mlp_bias must be false)")


def _weight_scale_is_divisor(hf_config: dict) -> bool:
    quantization = hf_config.get("quantization_config") or {}
    return quantization.get("linear_class", "bitlinear") != "autobitlinear"


def _float(checkpoint: SafetensorsCheckpoint, name: str, shape: tuple) -> np.ndarray:
    entry = checkpoint.entry(name)
    if entry.dtype not in FLOAT_DTYPES:
        raise ModelFormatError(f"{entry.file}: tensor {name} has dtype {entry.dtype}, "
                               f"expected a float type ({', '.join(FLOAT_DTYPES)})")
    return float_tensor(entry.file, name, checkpoint.read(name), shape)


def _layer(checkpoint, config, layout: HFLayout, index: int, scale_is_divisor: bool) -> Layer:
    prefix = f"model.layers.{index}"
    norms = {"attn_norm": ("input_layernorm", config.hidden),
             "attn_sub_norm": (layout.attn_sub_norm, config.q_dim),
             "ffn_norm": ("post_attention_layernorm", config.hidden),
             "ffn_sub_norm": (layout.ffn_sub_norm, config.ffn)}
    parts = {field: _float(checkpoint, f"{prefix}.{name}.weight", (size,))
             for field, (name, size) in norms.items()}
    for field, shape in config.linear_shapes().items():
        parts[field] = _linear(checkpoint, f"{prefix}.{LINEAR_PREFIXES[field]}", shape,
                               scale_is_divisor)
    return Layer(**parts)


def _linear(checkpoint, prefix: str, shape: tuple, scale_is_divisor: bool) -> TernaryTensor:
    name = f"{prefix}.weight"
    entry = checkpoint.entry(name)
    if entry.dtype == "U8":
        return _unpack(checkpoint, prefix, shape, scale_is_divisor)
    if entry.dtype not in FLOAT_DTYPES:
        raise ModelFormatError(f"{entry.file}: tensor {name} has dtype {entry.dtype}, "
                               f"expected latent float weights or packed U8 codes")
    latent = checkpoint.read(name)
    check_shape(entry.file, name, latent.shape, shape)
    return quantize_latent(entry.file, name, latent)


def unpack_codes(packed: np.ndarray, out_features: int) -> np.ndarray:
    """Ternary codes (int8, shape (out_features, in)) of transformers' packed uint8 layout.

    A stored 2-bit field of 3 is not a code; it comes back as 2 for the caller to reject.
    """
    fields = [(packed >> (2 * i)) & 3 for i in range(PACKED_CODES_PER_BYTE)]
    return np.concatenate(fields, axis=0)[:out_features].astype(np.int8) - 1


def _unpack(checkpoint, prefix: str, shape: tuple, scale_is_divisor: bool) -> TernaryTensor:
    name = f"{prefix}.weight"
    file = checkpoint.entry(name).file
    out_features, in_features = shape
    packed = checkpoint.read(name)
    packed_rows = -(-out_features // PACKED_CODES_PER_BYTE)
    check_shape(file, name, packed.shape, (packed_rows, in_features))
    codes = unpack_codes(packed, out_features)
    if np.any(codes > 1):
        raise ModelFormatError(f"{file}: tensor {name} holds the packed value 3, which is "
                               f"not a ternary code")
    weight_scale = _weight_scale(checkpoint, f"{prefix}.weight_scale")
    return TernaryTensor(codes, 1.0 / weight_scale if scale_is_divisor else weight_scale)


def _weight_scale(checkpoint, name: str) -> float:
    file = checkpoint.entry(name).file
    values = np.asarray(checkpoint.read(name), dtype=np.float64).reshape(-1)
    if values.size != 1:
        raise ModelFormatError(f"{file}: tensor {name} has {values.size} values, expected "
                               f"one scale per tensor")
    scale = float(values[0])
    if not (np.isfinite(scale) and scale > 0):
        raise ModelFormatError(f"{file}: tensor {name} is {scale!r}, expected a positive "
                               f"finite scale")
    return scale
