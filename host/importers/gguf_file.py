"""GGUF files of llama.cpp's BitNet architectures, read with ``gguf.GGUFReader``.

Architectures and their FFN activation, as llama.cpp builds them:

- ``bitnet`` (mainline llama.cpp, converted from 1bitLLM's ``BitnetForCausalLM``):
  ``build_bitnet`` uses ``LLM_FFN_SILU``.
- ``bitnet-b1.58`` and ``bitnet-25`` (Microsoft's bitnet.cpp fork, the 2B-4T model):
  ``build_bitnet_158`` uses ``LLM_FFN_RELU_SQR``.

All three use NeoX-style (rotate-half) RoPE on unpermuted Q/K rows. Ternary linears
hold {-s, 0, +s} in any type the ``gguf`` package can decode (F32, F16, BF16, TQ1_0,
TQ2_0, ...); an optional one-element ``blk.N.<linear>.scale`` tensor multiplies the
linear's output, as llama.cpp's ``build_lora_mm(w, x, w_s)`` does. Without an
``output`` tensor the LM head is the embedding (tied).

GGUF records dimensions fastest-first (ggml's ``ne``), the reverse of NumPy's order;
the reader's arrays are already in NumPy order, and every shape here and in error
messages is NumPy's (rows, columns) = (out_features, in_features).
"""

import struct
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType
from gguf.quants import dequantize

from tritium.hw.config import ModelConfig
from ..errors import ModelFormatError
from ..model import Layer, Model, TernaryTensor
from .common import check_shape, float_tensor, make_config, ternary_from_values

__all__ = ["load_gguf", "read_gguf_config", "GGUF_ACTIVATIONS"]

GGUF_ACTIVATIONS = {"bitnet": "silu", "bitnet-b1.58": "relu2", "bitnet-25": "relu2"}
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


def load_gguf(path) -> Model:
    """Read a BitNet GGUF file (not yet validated: see ``load_model``)."""
    path = Path(path)
    reader = _open(path)
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    config = _config(path, reader, tensors)

    embedding_shape = (config.vocab_size, config.hidden)
    embedding = _float(path, tensors, "token_embd.weight", embedding_shape)
    lm_head = None if config.tied_embedding else \
        _float(path, tensors, "output.weight", embedding_shape)
    norm_sizes = {"attn_norm": config.hidden, "attn_sub_norm": config.q_dim,
                  "ffn_norm": config.hidden, "ffn_sub_norm": config.ffn}
    layers = []
    for i in range(config.layers):
        parts = {name: _float(path, tensors, f"blk.{i}.{name}.weight", (norm_sizes[name],))
                 for name in NORM_TENSORS}
        for field, shape in config.linear_shapes().items():
            parts[field] = _ternary(path, tensors, f"blk.{i}.{LINEAR_TENSORS[field]}", shape)
        layers.append(Layer(**parts))
    output_norm = _float(path, tensors, "output_norm.weight", (config.hidden,))
    return Model(config, embedding, layers, output_norm, lm_head)


def read_gguf_config(path) -> ModelConfig:
    """The ModelConfig of a BitNet GGUF file, from its metadata and tensor shapes alone
    (no tensor data is read)."""
    path = Path(path)
    reader = _open(path)
    return _config(path, reader, {tensor.name: tensor for tensor in reader.tensors})


def _config(path: Path, reader: GGUFReader, tensors: dict) -> ModelConfig:
    arch = _string(path, reader, "general.architecture")
    if arch not in GGUF_ACTIVATIONS:
        raise ModelFormatError(f"{path}: architecture {arch!r} is not supported "
                               f"(expected one of {', '.join(GGUF_ACTIVATIONS)})")
    vocab_size = _numpy_shape(_tensor(path, tensors, "token_embd.weight"))[0]
    return _model_config(path, reader, arch, vocab_size, has_output="output.weight" in tensors)


# Bytes of each fixed-size GGUF value type; strings (8) and arrays (9) have a length.
_VALUE_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_MAX_DIMS = 4                                   # GGML_MAX_DIMS


class _HeaderScan:
    """Walks a GGUF header checking every count and length against the bytes left in
    the file, before ``GGUFReader`` (which loops over, and allocates for, whatever
    length the file claims) reads it. Allocates nothing in proportion to any length."""

    def __init__(self, path: Path, data: bytes, order: str):
        self.path, self.data, self.order, self.offset = path, data, order, 0

    def fail(self, what: str):
        raise ModelFormatError(f"{self.path}: corrupt GGUF header: {what} at byte "
                               f"{self.offset}, the file has {len(self.data)} bytes")

    def number(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.data):
            self.fail("truncated")
        (value,) = struct.unpack_from(self.order + fmt, self.data, self.offset)
        self.offset += size
        return value

    def skip(self, count: int, size: int, what: str):
        if count * size > len(self.data) - self.offset:
            self.fail(f"{what} claims {count:,} elements of {size} bytes, more than the file "
                      f"holds")
        self.offset += count * size

    def string(self, what: str):
        self.skip(self.number("Q"), 1, what)

    def value(self, kind: int, what: str):
        if kind in _VALUE_SIZES:
            self.skip(1, _VALUE_SIZES[kind], what)
        elif kind == _STRING:
            self.string(what)
        elif kind == _ARRAY:
            item, count = self.number("I"), self.number("Q")
            if item in _VALUE_SIZES:
                self.skip(count, _VALUE_SIZES[item], what)
                return
            if item not in (_STRING, _ARRAY):
                self.fail(f"{what} has unknown array item type {item}")
            # Each string or array item takes at least its 8-byte length: bound the count
            # before walking the items.
            if count * 8 > len(self.data) - self.offset:
                self.fail(f"{what} claims {count:,} items, more than the file holds")
            for _ in range(count):
                self.value(item, what)
        else:
            self.fail(f"{what} has unknown value type {kind}")

    def header(self):
        self.offset = 8
        tensor_count, kv_count = self.number("Q"), self.number("Q")
        # A key-value pair takes at least 13 bytes, a tensor description 24.
        if kv_count * 13 + tensor_count * 24 > len(self.data) - self.offset:
            self.fail(f"{kv_count:,} keys and {tensor_count:,} tensors claimed, more than "
                      f"the file holds")
        for index in range(kv_count):
            self.string(f"key {index}'s name")
            self.value(self.number("I"), f"key {index}")
        for index in range(tensor_count):
            self.string(f"tensor {index}'s name")
            dims = self.number("I")
            if dims > _MAX_DIMS:
                self.fail(f"tensor {index} claims {dims} dimensions (at most {_MAX_DIMS})")
            self.skip(dims, 8, f"tensor {index}'s shape")
            self.skip(1, 12, f"tensor {index}'s type and offset")


def _check_header(path: Path):
    """Refuse a GGUF file whose header claims more data than the file has."""
    import mmap
    try:
        with open(path, "rb") as file:
            if file.read(4) != b"GGUF":
                return                          # GGUFReader names the bad magic
            version = int.from_bytes(file.read(4), "little")
            if version < 2:
                return                          # ... and the unsupported version
            order = ">" if version & 0xFFFF == 0 else "<"
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                _HeaderScan(path, data, order).header()
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _open(path: Path) -> GGUFReader:
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such file")
    _check_header(path)
    try:
        return GGUFReader(path, "r")
    except (ValueError, IndexError, KeyError, TypeError, EOFError, OSError,
            UnicodeDecodeError, struct.error) as exc:
        raise ModelFormatError(f"{path}: not a readable GGUF file (truncated or "
                               f"corrupt: {exc})") from None


def _field(path: Path, reader: GGUFReader, key: str):
    field = reader.fields.get(key)
    if field is None:
        raise ModelFormatError(f"{path}: key {key} is missing")
    if not field.types or field.types[0] == GGUFValueType.ARRAY:
        raise ModelFormatError(f"{path}: key {key} is not a single value")
    return field


def _string(path: Path, reader: GGUFReader, key: str) -> str:
    field = _field(path, reader, key)
    if field.types[0] != GGUFValueType.STRING:
        raise ModelFormatError(f"{path}: key {key} is not a string")
    return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")


def _number(path: Path, reader: GGUFReader, key: str):
    field = _field(path, reader, key)
    if field.types[0] in (GGUFValueType.STRING, GGUFValueType.BOOL):
        raise ModelFormatError(f"{path}: key {key} is not a number")
    value = field.parts[field.data[0]][0]
    if isinstance(value, np.floating):
        # float32 keys store 1e-5 as 9.99999975e-06; its shortest repr recovers 1e-05.
        return float(str(value))
    return int(value)


def _model_config(path: Path, reader: GGUFReader, arch: str, vocab_size: int,
                  has_output: bool):
    def key(name):
        return _number(path, reader, f"{arch}.{name}")

    def optional_key(name, default):
        return key(name) if f"{arch}.{name}" in reader.fields else default

    hidden = key("embedding_length")
    heads = key("attention.head_count")
    head_dim = optional_key("attention.key_length", None)
    if head_dim is None:
        head_dim = _head_dim(path, arch, hidden, heads)
    return make_config(
        path, name=_name(path, reader), vocab_size=vocab_size, hidden=hidden,
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


def _name(path: Path, reader: GGUFReader) -> str:
    if "general.name" in reader.fields:
        return _string(path, reader, "general.name")
    return path.stem


def _tensor(path: Path, tensors: dict, name: str):
    if name not in tensors:
        raise ModelFormatError(f"{path}: tensor {name} is missing")
    return tensors[name]


def _numpy_shape(tensor) -> tuple:
    return tuple(int(dim) for dim in reversed(tensor.shape))


def _values(path: Path, tensor) -> np.ndarray:
    """The tensor as float32 in NumPy order, whatever its stored type."""
    try:
        # A NaN or infinite block scale gives NaN or inf values, reported by the caller.
        with np.errstate(invalid="ignore", over="ignore"):
            values = dequantize(tensor.data, tensor.tensor_type)
    except (NotImplementedError, ValueError) as exc:
        raise ModelFormatError(f"{path}: tensor {tensor.name} has type "
                               f"{tensor.tensor_type.name}, which cannot be decoded "
                               f"({exc})") from None
    return values.reshape(_numpy_shape(tensor))


def _float(path: Path, tensors: dict, name: str, shape: tuple) -> np.ndarray:
    tensor = _tensor(path, tensors, name)
    return float_tensor(path, name, _values(path, tensor), shape)


def _ternary(path: Path, tensors: dict, prefix: str, shape: tuple) -> TernaryTensor:
    name = f"{prefix}.weight"
    tensor = _tensor(path, tensors, name)
    check_shape(path, name, _numpy_shape(tensor), shape)
    ternary = ternary_from_values(path, name, _values(path, tensor),
                                  _ternary_tolerance(tensor.tensor_type))
    scale_name = f"{prefix}.scale"
    if scale_name in tensors:
        ternary.scale *= _output_scale(path, tensors[scale_name])
    return ternary


def _ternary_tolerance(tensor_type) -> float:
    if tensor_type in _EXACT_TYPES:
        return _FLOAT32_TOLERANCE
    if tensor_type == GGMLQuantizationType.BF16:
        return _BFLOAT16_TOLERANCE
    return _FP16_TOLERANCE


def _output_scale(path: Path, tensor) -> float:
    values = _values(path, tensor).reshape(-1)
    if values.size != 1:
        raise ModelFormatError(f"{path}: tensor {tensor.name} has {values.size} values, "
                               f"expected one scale")
    scale = float(values[0])
    if not (np.isfinite(scale) and scale > 0):
        raise ModelFormatError(f"{path}: tensor {tensor.name} is {scale!r}, expected a "
                               f"positive finite scale")
    return scale
