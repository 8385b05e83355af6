"""GGUF files of llama.cpp's BitNet architectures, read with tritium's own GGUF reader
(:mod:`.gguf_reader`).

Architectures and their FFN activation, as llama.cpp builds them:

- ``bitnet`` (mainline llama.cpp, converted from 1bitLLM's ``BitnetForCausalLM``):
  ``build_bitnet`` uses ``LLM_FFN_SILU``.
- ``bitnet-b1.58`` and ``bitnet-25`` (Microsoft's bitnet.cpp fork, the 2B-4T model):
  ``build_bitnet_158`` uses ``LLM_FFN_RELU_SQR``.

All three use NeoX-style (rotate-half) RoPE on unpermuted Q/K rows. Ternary linears
hold {-s, 0, +s} in any type the ``gguf`` package can decode (F32, F16, BF16, TQ1_0,
TQ2_0, ...), or bitnet.cpp's I2_S (:mod:`.i2s`); an optional one-element
``blk.N.<linear>.scale`` tensor multiplies the linear's output, as llama.cpp's
``build_lora_mm(w, x, w_s)`` does. Without an ``output`` tensor the LM head is the
embedding (tied).

GGUF records dimensions fastest-first (ggml's ``ne``), the reverse of NumPy's order;
the reader gives shapes in NumPy order, and every shape here and in error messages is
NumPy's (rows, columns) = (out_features, in_features).
"""

from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType
from gguf.quants import dequantize, quant_shape_to_byte_shape

from tritium.hw.config import ModelConfig
from ..errors import InputError, ModelFormatError
from ..model import Layer, Model, TernaryTensor
from .common import check_shape, float_tensor, make_config, ternary_from_values
from .gguf_reader import GGUFFile, GGUFTensor, open_gguf
from .i2s import I2S_LAYOUTS, I2S_TYPE, decode_i2s, i2s_bytes

__all__ = ["load_gguf", "read_gguf_config", "GGUF_ACTIVATIONS", "I2S_RELEASED_ARCHITECTURES"]

GGUF_ACTIVATIONS = {"bitnet": "silu", "bitnet-b1.58": "relu2", "bitnet-25": "relu2"}
# The architectures of the 2B-4T family, whose GGUFs Microsoft releases with I2_S
# tensors written on x86; a `bitnet` file with I2_S tensors was quantized on whatever
# machine ran bitnet.cpp's converter, so its layout cannot be told.
I2S_RELEASED_ARCHITECTURES = ("bitnet-b1.58", "bitnet-25")
LINEAR_TENSORS = {"wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
                  "w_gate": "ffn_gate", "w_up": "ffn_up", "w_down": "ffn_down"}
NORM_TENSORS = ("attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm")

# How far apart the nonzero magnitudes of one ternary tensor may be, relative to
# their mean: the rounding of the stored type. Block formats (TQ1_0, TQ2_0, Q8_0...)
# keep fp16 block scales, so blocks that wrote the same s differ by fp16 rounding at
# most; a spread beyond it means the tensor has several scales.
_FLOAT32_TOLERANCE = 1e-6
_BFLOAT16_TOLERANCE = 2.0 ** -7
_FP16_TOLERANCE = 2.0 ** -10
_EXACT_TYPES = (GGMLQuantizationType.F32, GGMLQuantizationType.F64)


def load_gguf(path, i2s_layout: str = None, progress=None) -> Model:
    """Read a BitNet GGUF file (not yet validated: see ``load_model``).

    ``i2s_layout`` (``"x86"`` or ``"arm"``) says how its I2_S tensors are packed, which
    the file does not record; without it, the 2B-4T architectures are read as x86 (the
    layout of Microsoft's released files) and any other is refused. ``progress(done,
    total)``, if given, hears each decoder layer read.
    """
    path = Path(path)
    gguf = open_gguf(path)
    tensors = gguf.tensors
    config = _config(path, gguf, tensors)
    layout = _I2SLayoutChoice(path, _string(path, gguf, "general.architecture"), i2s_layout)

    embedding_shape = (config.vocab_size, config.hidden)
    embedding = _float(gguf, "token_embd.weight", embedding_shape)
    lm_head = None if config.tied_embedding else \
        _float(gguf, "output.weight", embedding_shape)
    norm_sizes = {"attn_norm": config.hidden, "attn_sub_norm": config.q_dim,
                  "ffn_norm": config.hidden, "ffn_sub_norm": config.ffn}
    layers = []
    for i in range(config.layers):
        parts = {name: _float(gguf, f"blk.{i}.{name}.weight", (norm_sizes[name],))
                 for name in NORM_TENSORS}
        for field, shape in config.linear_shapes().items():
            parts[field] = _ternary(gguf, f"blk.{i}.{LINEAR_TENSORS[field]}", shape, layout)
        layers.append(Layer(**parts))
        if progress is not None:
            progress(i + 1, config.layers)
    output_norm = _float(gguf, "output_norm.weight", (config.hidden,))
    return Model(config, embedding, layers, output_norm, lm_head)


def read_gguf_config(path) -> ModelConfig:
    """The ModelConfig of a BitNet GGUF file, from its metadata and tensor shapes alone
    (no tensor data is read)."""
    path = Path(path)
    gguf = open_gguf(path)
    return _config(path, gguf, gguf.tensors)


def _config(path: Path, gguf: GGUFFile, tensors: dict) -> ModelConfig:
    arch = _string(path, gguf, "general.architecture")
    if arch not in GGUF_ACTIVATIONS:
        raise ModelFormatError(f"{path}: architecture {arch!r} is not supported "
                               f"(expected one of {', '.join(GGUF_ACTIVATIONS)})")
    vocab_size = _tensor(gguf, "token_embd.weight").shape[0]
    return _model_config(path, gguf, arch, vocab_size, has_output="output.weight" in tensors)


def _field(path: Path, gguf: GGUFFile, key: str):
    field = gguf.fields.get(key)
    if field is None:
        raise ModelFormatError(f"{path}: key {key} is missing")
    if field.type == GGUFValueType.ARRAY:
        raise ModelFormatError(f"{path}: key {key} is not a single value")
    return field


def _string(path: Path, gguf: GGUFFile, key: str) -> str:
    field = _field(path, gguf, key)
    if field.type != GGUFValueType.STRING:
        raise ModelFormatError(f"{path}: key {key} is not a string")
    return field.value.decode("utf-8", errors="replace")


def _number(path: Path, gguf: GGUFFile, key: str):
    field = _field(path, gguf, key)
    if field.type in (GGUFValueType.STRING, GGUFValueType.BOOL):
        raise ModelFormatError(f"{path}: key {key} is not a number")
    if field.type == GGUFValueType.FLOAT32:
        # float32 keys store 1e-5 as 9.99999975e-06; its shortest repr recovers 1e-05.
        return float(str(np.float32(field.value)))
    return field.value


def _model_config(path: Path, gguf: GGUFFile, arch: str, vocab_size: int, has_output: bool):
    def key(name):
        return _number(path, gguf, f"{arch}.{name}")

    def optional_key(name, default):
        return key(name) if f"{arch}.{name}" in gguf.fields else default

    hidden = key("embedding_length")
    heads = key("attention.head_count")
    head_dim = optional_key("attention.key_length", None)
    if head_dim is None:
        head_dim = _head_dim(path, arch, hidden, heads)
    return make_config(
        path, name=_name(path, gguf), vocab_size=vocab_size, hidden=hidden,
        layers=key("block_count"), heads=heads,
        kv_heads=optional_key("attention.head_count_kv", heads), head_dim=head_dim,
        ffn=key("feed_forward_length"), activation=GGUF_ACTIVATIONS[arch],
        rope_theta=optional_key("rope.freq_base", 10000.0), rope_pairing="half",
        norm_eps=key("attention.layer_norm_rms_epsilon"),
        max_context=key("context_length"), tied_embedding=not has_output)


def _head_dim(path: Path, arch: str, hidden: int, heads: int) -> int:
    if heads < 1 or hidden % heads:
        raise ModelFormatError(f"{path}: bad model config: {arch}.embedding_length {hidden} "
                               f"is not a multiple of {arch}.attention.head_count {heads}")
    return hidden // heads


def _name(path: Path, gguf: GGUFFile) -> str:
    if "general.name" in gguf.fields:
        return _string(path, gguf, "general.name")
    return path.stem


def _tensor(gguf: GGUFFile, name: str) -> GGUFTensor:
    if name not in gguf.tensors:
        raise ModelFormatError(f"{gguf.path}: tensor {name} is missing")
    return gguf.tensors[name]


def _type_name(kind: int) -> str:
    if kind == I2S_TYPE:
        return "I2_S"
    try:
        return GGMLQuantizationType(kind).name
    except ValueError:
        return f"number {kind}"


def _stored(gguf: GGUFFile, tensor: GGUFTensor, size: int) -> np.ndarray:
    """The ``size`` bytes of ``tensor``'s data, after checking the file holds them
    before the next tensor's data starts."""
    if size > tensor.space:
        end = tensor.offset + size
        if end > gguf.size:
            raise ModelFormatError(f"{gguf.path}: truncated: tensor {tensor.name} ends at "
                                   f"byte {end}, the file has {gguf.size} bytes")
        raise ModelFormatError(f"{gguf.path}: tensor {tensor.name} of shape {tensor.shape} "
                               f"and type {_type_name(tensor.type)} takes {size} bytes, but "
                               f"the next tensor starts {tensor.space} bytes after it")
    return gguf.data(tensor, size)


def _values(gguf: GGUFFile, tensor: GGUFTensor) -> np.ndarray:
    """The tensor as float32 in NumPy order, for any type the ``gguf`` package decodes."""
    kind = _type_name(tensor.type)
    if tensor.type not in GGML_QUANT_SIZES:
        what = "I2_S holds ternary linears only" if tensor.type == I2S_TYPE else \
            "which tritium cannot read"
        raise ModelFormatError(f"{gguf.path}: tensor {tensor.name} has type {kind}, {what}")
    qtype = GGMLQuantizationType(tensor.type)
    block, block_bytes = GGML_QUANT_SIZES[qtype]
    if tensor.elements % block or (tensor.shape and tensor.shape[-1] % block):
        raise ModelFormatError(f"{gguf.path}: tensor {tensor.name} of shape {tensor.shape} "
                               f"is not made of whole {kind} blocks of {block} values")
    raw = _stored(gguf, tensor, tensor.elements // block * block_bytes)
    try:
        # A NaN or infinite block scale gives NaN or inf values, reported by the caller.
        with np.errstate(invalid="ignore", over="ignore"):
            values = dequantize(raw.reshape(quant_shape_to_byte_shape(tensor.shape, qtype)),
                                qtype)
    except (NotImplementedError, ValueError) as exc:
        raise ModelFormatError(f"{gguf.path}: tensor {tensor.name} has type {kind}, which "
                               f"cannot be decoded ({exc})") from None
    return values.reshape(tensor.shape)


def _float(gguf: GGUFFile, name: str, shape: tuple) -> np.ndarray:
    return float_tensor(gguf.path, name, _values(gguf, _tensor(gguf, name)), shape)


def _ternary(gguf: GGUFFile, prefix: str, shape: tuple, layout) -> TernaryTensor:
    name = f"{prefix}.weight"
    tensor = _tensor(gguf, name)
    check_shape(gguf.path, name, tensor.shape, shape)
    if tensor.type == I2S_TYPE:
        ternary = _i2s(gguf, tensor, layout.get())
    else:
        ternary = ternary_from_values(gguf.path, name, _values(gguf, tensor),
                                      _ternary_tolerance(tensor.type))
    scale_name = f"{prefix}.scale"
    if scale_name in gguf.tensors:
        ternary.scale *= _output_scale(gguf, gguf.tensors[scale_name])
    return ternary


def _i2s(gguf: GGUFFile, tensor: GGUFTensor, layout) -> TernaryTensor:
    size = i2s_bytes(tensor.elements)
    # The fork pads each tensor to the file's alignment: more room than that means the
    # tensor was written with another size (e.g. without the scale).
    if tensor.space > -(-size // gguf.alignment) * gguf.alignment:
        raise ModelFormatError(
            f"{gguf.path}: tensor {tensor.name} of shape {tensor.shape} holds "
            f"{tensor.space} bytes, but an I2_S tensor of {tensor.elements} values takes "
            f"{tensor.elements} / 4 + 32 = {size}")
    return decode_i2s(gguf.path, tensor.name, _stored(gguf, tensor, size), tensor.shape,
                      layout)


class _I2SLayoutChoice:
    """The I2_S layout of a file, decided when its first I2_S tensor is read (a file
    without one needs none): the one asked for, else x86 for the 2B-4T architectures,
    whose released GGUFs are x86's; any other file is refused, as its bytes do not say."""

    def __init__(self, path: Path, arch: str, requested: str = None):
        if requested is not None and requested not in I2S_LAYOUTS:
            raise InputError(f"unknown I2_S layout {requested!r}; choose one of "
                             f"{', '.join(I2S_LAYOUTS)}")
        self.path, self.arch, self.requested = path, arch, requested

    def get(self):
        if self.requested is not None:
            return I2S_LAYOUTS[self.requested]
        if self.arch in I2S_RELEASED_ARCHITECTURES:
            return I2S_LAYOUTS["x86"]
        raise ModelFormatError(
            f"{self.path}: cannot tell the layout of its I2_S tensors: architecture "
            f"{self.arch!r} files are quantized by bitnet.cpp on the user's machine, in "
            f"128-value blocks on x86 and 64-value blocks on ARM, and the file records "
            f"neither; give the layout (--i2s-layout x86 or arm)")


def _ternary_tolerance(tensor_type: int) -> float:
    if tensor_type in _EXACT_TYPES:
        return _FLOAT32_TOLERANCE
    if tensor_type == GGMLQuantizationType.BF16:
        return _BFLOAT16_TOLERANCE
    return _FP16_TOLERANCE


def _output_scale(gguf: GGUFFile, tensor: GGUFTensor) -> float:
    values = _values(gguf, tensor).reshape(-1)
    if values.size != 1:
        raise ModelFormatError(f"{gguf.path}: tensor {tensor.name} has {values.size} values, "
                               f"expected one scale")
    scale = float(values[0])
    if not (np.isfinite(scale) and scale > 0):
        raise ModelFormatError(f"{gguf.path}: tensor {tensor.name} is {scale!r}, expected a "
                               f"positive finite scale")
    return scale
