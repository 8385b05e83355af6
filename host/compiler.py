"""Compile a model into the accelerator's memory image and program (docs/program.md).

:func:`compile_model` turns a :class:`~tritium.host.model.Model` into a
:class:`CompiledModel` for one :class:`~tritium.hw.config.AcceleratorConfig`: the bytes
to write to the device once, where the program and the io region are, and the decoded
instructions for inspection.

Memory (bus words of ``data_width / 8`` bytes, from address 0, everything below
``kv_base``), in program order so that a run reads memory front to back:

- per layer: the ``attn_norm`` gains, ``wq``, ``wk``, ``wv``, the ``attn_sub_norm``
  gains, ``wo``, ``ffn_norm`` gains, ``w_gate``, ``w_up``, ``ffn_sub_norm`` gains,
  ``w_down``; each linear is its ``pack_ternary(W, tlmm.tile)`` stream, each norm its
  int16 gains little endian, both zero-padded to whole words;
- the io region: ``max_tokens * hidden / lanes`` words, token after token;
- the program: one instruction per ``ceil(32 / word bytes)`` words.

Scratchpad (beats of ``lanes`` int32): five token-major regions one after the other,
``x``, ``qkv``, ``attn``, ``gate``, ``up``. Region ``r`` holds ``max_tokens`` vectors of
``r.beats`` beats; token ``t``'s vector starts at ``r.base + t * r.stride`` with
``stride = beats``, so every instruction's ``src_stride``/``dst_stride`` is its
region's width. They fill exactly ``config.scratch_words``. GATE writes its output
over the gate vector in place (the element-wise unit reads a beat before it writes it).

A layer is 13 instructions: docs/program.md's ten steps, with one LINEAR per matrix
(the QKV and the gate/up steps are three and two LINEARs), because every linear has
its own output scale and an instruction carries one.
"""

import struct
from dataclasses import dataclass

import numpy as np

from tritium.hw.config import AcceleratorConfig
from tritium.hw.control.isa import (FIELDS, FLAG_ACCUMULATE, INSTRUCTION_BYTES, OPCODES,
                                    SCALE_EXPONENT_BITS, SCALE_MANTISSA_BITS)
from tritium.sim.golden.model import QuantizedModel
from .errors import InputError
from .packer import pack_ternary

__all__ = ["check_model", "ScratchRegion", "CompiledModel", "compile_model", "scratch_layout",
           "encode_instruction", "decode_instruction", "instruction_words", "pack_scale",
           "unpack_scale"]

FIELD_NAMES = tuple(name for name, _, _ in FIELDS)


def _instruction_struct() -> struct.Struct:
    """One struct for the whole instruction, with pad bytes where no field is."""
    fmt, at = "<", 0
    for _, offset, code in sorted(FIELDS, key=lambda field: field[1]):
        fmt += "x" * (offset - at) + code
        at = offset + struct.calcsize("<" + code)
    layout = struct.Struct(fmt + "x" * (INSTRUCTION_BYTES - at))
    assert layout.size == INSTRUCTION_BYTES
    return layout


_INSTRUCTION = _instruction_struct()
_FIELD_ORDER = tuple(name for name, _, _ in sorted(FIELDS, key=lambda field: field[1]))


def encode_instruction(**fields) -> bytes:
    """Encode one instruction; fields not given are 0. ``opcode`` may be a name."""
    unknown = set(fields) - set(FIELD_NAMES)
    if unknown:
        raise ValueError(f"unknown instruction field(s) {sorted(unknown)}; "
                         f"the fields are {', '.join(FIELD_NAMES)}")
    if isinstance(fields.get("opcode"), str):
        fields["opcode"] = OPCODES[fields["opcode"]]
    values = {}
    for name, _, code in FIELDS:
        value, bits = int(fields.get(name, 0)), 8 * struct.calcsize("<" + code)
        if not 0 <= value < 1 << bits:
            raise ValueError(f"instruction field {name} = {value} does not fit {bits} "
                             f"unsigned bits")
        values[name] = value
    return _INSTRUCTION.pack(*(values[name] for name in _FIELD_ORDER))


def decode_instruction(data: bytes) -> dict:
    """The fields of one instruction (its first 32 bytes), by name."""
    return dict(zip(_FIELD_ORDER, _INSTRUCTION.unpack(bytes(data[:INSTRUCTION_BYTES]))))


def instruction_words(word_bytes: int) -> int:
    """Bus words one instruction occupies (an instruction never shares a word)."""
    return -(-INSTRUCTION_BYTES // word_bytes)


def pack_scale(scale) -> int:
    """A scale ``(m, e)`` as the instruction's u32: ``m | (e & 0x3FF) << 16``."""
    mantissa, exponent = int(scale[0]), int(scale[1])
    low, high = -(1 << (SCALE_EXPONENT_BITS - 1)), 1 << (SCALE_EXPONENT_BITS - 1)
    if not 0 <= mantissa < 1 << SCALE_MANTISSA_BITS or not low <= exponent < high:
        raise InputError(f"scale {mantissa} * 2**{exponent} does not fit the instruction's "
                         f"{SCALE_MANTISSA_BITS}-bit mantissa and {SCALE_EXPONENT_BITS}-bit "
                         f"exponent")
    return mantissa | (exponent & ((1 << SCALE_EXPONENT_BITS) - 1)) << SCALE_MANTISSA_BITS


def unpack_scale(value: int):
    """Inverse of :func:`pack_scale`: ``(m, e)`` as NumPy int64 (the golden form)."""
    mantissa = value & ((1 << SCALE_MANTISSA_BITS) - 1)
    exponent = (value >> SCALE_MANTISSA_BITS) & ((1 << SCALE_EXPONENT_BITS) - 1)
    if exponent >= 1 << (SCALE_EXPONENT_BITS - 1):            # sign-extend the s10
        exponent -= 1 << SCALE_EXPONENT_BITS
    return np.int64(mantissa), np.int64(exponent)


@dataclass(frozen=True)
class ScratchRegion:
    """Token ``t``'s vector of ``beats`` beats starts at scratch beat ``base + t * stride``."""
    base: int
    stride: int
    beats: int

    def at(self, token: int) -> int:
        return self.base + token * self.stride


def scratch_layout(config: AcceleratorConfig) -> dict:
    """The scratchpad regions by name (see the module docstring)."""
    model, lanes = config.model, config.lanes
    features = {"x": model.hidden, "qkv": model.q_dim + 2 * model.kv_dim,
                "attn": model.q_dim, "gate": model.ffn, "up": model.ffn}
    regions, base = {}, 0
    for name, width in features.items():
        beats = width // lanes
        regions[name] = ScratchRegion(base, beats, beats)
        base += config.max_tokens * beats
    assert base <= config.scratch_words
    return regions


@dataclass(frozen=True)
class CompiledModel:
    """A model compiled for one accelerator.

    Attributes
    ----------
    image : list of (int, bytes)
        What to write: word address and whole words of data.
    placement : dict
        Name (``"layer0.wq"``, ``"layer0.attn_norm"``, ``"io"``, ``"program"``) ->
        ``(word address, words)`` of every region below ``kv_base``.
    program_address, io_address : int
        Word addresses of the first instruction and of the io region.
    instructions : list of dict
        The program, decoded (:func:`decode_instruction`).
    qmodel : QuantizedModel
    config : AcceleratorConfig
    scratch : dict
        The scratchpad's :class:`ScratchRegion` by name.
    words : int
        Memory words used (all below ``config.kv_base``).
    """
    image: list
    placement: dict
    program_address: int
    io_address: int
    instructions: list
    qmodel: QuantizedModel
    config: AcceleratorConfig
    scratch: dict
    words: int


class _Allocator:
    """Places regions at word-aligned addresses from 0 upwards."""

    def __init__(self, word_bytes: int):
        self.word_bytes, self.next, self.image, self.placement = word_bytes, 0, [], {}

    def reserve(self, name: str, words: int) -> int:
        address, self.next = self.next, self.next + words
        self.placement[name] = (address, words)
        return address

    def place(self, name: str, data: bytes) -> int:
        data = bytes(data) + bytes(-len(data) % self.word_bytes)
        address = self.reserve(name, len(data) // self.word_bytes)
        self.image.append((address, data))
        return address


# Each layer's memory regions in program order: norm gains and the linears they feed.
_LAYER_REGIONS = ("attn_norm", "wq", "wk", "wv", "attn_sub_norm", "wo", "ffn_norm", "w_gate",
                  "w_up", "ffn_sub_norm", "w_down")


def check_model(model, config: AcceleratorConfig) -> None:
    """Raise :class:`InputError` unless ``model`` can run on ``config``'s design: its
    shape, context and RoPE theta (what :func:`compile_model` checks first)."""
    try:
        config.check_model(model.config)
    except ValueError as error:
        raise InputError(str(error)) from None
    # The RoPE table is a ROM built from the design's own model config, which
    # check_model does not compare; a model with another theta would rotate wrongly.
    if model.config.rope_theta != config.model.rope_theta:
        raise InputError(f"model {model.config.name!r} has rope_theta = "
                         f"{model.config.rope_theta!r}, but accelerator {config.name!r} is "
                         f"built for rope_theta = {config.model.rope_theta!r}")


def compile_model(model, config: AcceleratorConfig) -> CompiledModel:
    """Quantize ``model``, lay it out in memory and write its program for ``config``.

    Raises :class:`InputError` if the model's shape does not fit the design or the
    image does not fit below the KV cache.
    """
    check_model(model, config)
    qmodel = QuantizedModel(model)
    cfg, lanes = config.model, config.lanes
    word_bytes = config.data_width // 8
    memory = _Allocator(word_bytes)

    addresses = []
    for index, layer in enumerate(qmodel.layers):
        where = {}
        for name in _LAYER_REGIONS:
            if name in layer.linears:
                data = pack_ternary(layer.linears[name].weights, config.tlmm.tile).data
            else:
                data = getattr(layer, name).values.astype("<i2").tobytes()
            where[name] = memory.place(f"layer{index}.{name}", data)
        addresses.append(where)
    io_address = memory.reserve("io", config.max_tokens * cfg.hidden // lanes)

    scratch = scratch_layout(config)
    program = [_instruction("LOAD", address=io_address, dst=scratch["x"].base,
                            dst_stride=scratch["x"].stride, beats=scratch["x"].beats)]
    for index, layer in enumerate(qmodel.layers):
        program += _layer_program(index, layer, addresses[index], qmodel, config, scratch)
    program += [_instruction("STORE", address=io_address, src=scratch["x"].base,
                             src_stride=scratch["x"].stride, beats=scratch["x"].beats),
                _instruction("END")]
    padding = bytes(instruction_words(word_bytes) * word_bytes - INSTRUCTION_BYTES)
    program_address = memory.place("program", b"".join(code + padding for code in program))

    if memory.next > config.kv_base:
        raise InputError(f"model {cfg.name!r} needs {memory.next} words of memory for its "
                         f"weights, gains, io and program, but accelerator {config.name!r} "
                         f"has {config.kv_base} below its KV cache")
    return CompiledModel(image=memory.image, placement=memory.placement,
                         program_address=program_address, io_address=io_address,
                         instructions=[decode_instruction(code) for code in program],
                         qmodel=qmodel, config=config, scratch=scratch, words=memory.next)


def _instruction(opcode: str, **fields) -> bytes:
    try:
        return encode_instruction(opcode=OPCODES[opcode], **fields)
    except ValueError as error:
        raise InputError(f"cannot encode a {opcode} instruction: {error}") from None


def _layer_program(index, layer, address, qmodel, config, scratch) -> list:
    """The 13 instructions of one decoder layer (``GoldenModel.layer``)."""
    cfg, lanes, tlmm = config.model, config.lanes, config.tlmm
    x, qkv, attn, gate, up = (scratch[name] for name in ("x", "qkv", "attn", "gate", "up"))

    def norm(name, source, features):
        eps = int(qmodel.eps[features])
        if eps >= 1 << 32:
            raise InputError(f"the {name} eps term {eps} does not fit the instruction's u32")
        return _instruction("NORM", address=address[name], src=source.base,
                            src_stride=source.stride, beats=features // lanes, eps=eps)

    def linear(name, target, offset=0, accumulate=False):
        rows, cols = tlmm.tile.padded_shape(*cfg.linear_shapes()[name])
        return _instruction("LINEAR", flags=FLAG_ACCUMULATE if accumulate else 0,
                            address=address[name], dst=target.base + offset,
                            dst_stride=target.stride, beats=cols // tlmm.k_per_word,
                            blocks=rows // tlmm.rows,
                            scale=pack_scale(layer.linears[name].out_scale))

    return [
        norm("attn_norm", x, cfg.hidden),
        linear("wq", qkv),
        linear("wk", qkv, cfg.q_dim // lanes),
        linear("wv", qkv, (cfg.q_dim + cfg.kv_dim) // lanes),
        _instruction("ATTEND", layer=index, src=qkv.base, src_stride=qkv.stride,
                     beats=qkv.beats, dst=attn.base, dst_stride=attn.stride,
                     scale=pack_scale(qmodel.score_scale)),
        norm("attn_sub_norm", attn, cfg.q_dim),
        linear("wo", x, accumulate=True),
        norm("ffn_norm", x, cfg.hidden),
        linear("w_gate", gate),
        linear("w_up", up),
        _instruction("GATE", src=gate.base, aux=up.base, src_stride=gate.stride,
                     dst=gate.base, dst_stride=gate.stride, beats=gate.beats),
        norm("ffn_sub_norm", gate, cfg.ffn),
        linear("w_down", x, accumulate=True),
    ]
