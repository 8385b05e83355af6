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
- with ``config.embedding == "device"``, the embedding table: ``vocab_size`` rows of
  ``hidden`` values (exactly the host's ``embed`` of every id), int32 Q19.12 or, in a
  16-bit table (``embedding_bits``), int16 Q3.12, a row every
  ``config.embedding_row_words`` words;
- with ``config.head == "device"``, the output norm's int16 gains and the LM head in
  the head unit's layout (``host/head_packer.py``, docs/head.md);
- the io region, three parts one after the other: the run's inputs, token after token
  (embedding vectors, ``max_tokens * hidden / lanes`` words, or with device embedding
  one token id per word, in the low 32 bits, ``max_tokens`` words; on a design of
  several steps, ``isa.design_steps``, ``max(max_tokens, steps) + 1`` words: step
  ``s`` reads its input at word ``s``, where step ``s - 1`` stored its choice); its
  final hidden states (``max_tokens * hidden / lanes`` words, at ``states_address``);
  with a device head ``head_k`` words, the run's top-k (:func:`decode_top`, at
  ``top_address``). A run never writes its own inputs, so running it again computes the
  same values into the same places (a RUN frame that a line duplicated does no harm);
- the program: one instruction per ``ceil(32 / word bytes)`` words; with a device head
  a second one after it, the same without the head (``"program_no_head"``), for the
  runs whose top-k nobody reads: a prompt's runs before its last, and runs whose
  logits the host computes from the hidden states.

Scratchpad (beats of ``lanes`` int32): four token-major regions one after the other,
``x``, ``qkv``, ``attn``, ``gate``. Region ``r`` holds ``max_tokens`` vectors of
``r.beats`` beats; token ``t``'s vector starts at ``r.base + t * r.stride`` with
``stride = beats``, so every instruction's ``src_stride``/``dst_stride`` is its
region's width. They fill exactly ``config.scratch_words``. The FFN's ``up`` has no
region: the LINEAR of ``w_up`` gates (``FLAG_GATE``) and writes ``act(gate) * up``
over the gate vector in place (the gating reads a beat before it writes it).
With device embedding the run's token ids are LOADed into the ``qkv`` region (one beat
per token, the id in lane 0), which is free until the first layer's QKV linears, and
EMBED reads them there.

With a device head the program ends NORM (the output norm, of ``x``) -> HEAD (the last
token's codes against the head, the top-k into ``qkv``) -> STORE of those ``head_k``
beats (``FLAG_ONE_TOKEN``) after the hidden states' STORE; on a design of several
steps, a STORE of the first entry (``FLAG_ONE_TOKEN | FLAG_AT_STEP``) after the step's
tokens in the inputs, and the LOAD of the ids has ``FLAG_AT_STEP`` (docs/program.md,
"Steps").

A layer is 12 instructions: docs/program.md's steps, with one LINEAR per matrix (the
QKV and the gate/up steps are three and two LINEARs), because every linear has its own
output scale and an instruction carries one; the gating is the second of the two.

The layout (:func:`memory_plan`) and the instruction sequence (:func:`program_fields`)
follow from the config alone; :func:`compile_model` fills them with a model's packed
weights, gains, scales and eps terms, and the performance model
(:mod:`tritium.host.performance`) times the same sequence.
"""

import struct
from dataclasses import dataclass

import numpy as np

from tritium.hw.config import AcceleratorConfig, ModelConfig, rope_row_pairs
from tritium.hw.elementwise.rope import rope_table
from tritium.hw.control.isa import (FIELDS, FLAG_ACCUMULATE, FLAG_AT_STEP, FLAG_GATE,
                                    FLAG_NEXT, FLAG_ONE_TOKEN, INSTRUCTION_BYTES, OPCODES,
                                    SCALE_EXPONENT_BITS, SCALE_MANTISSA_BITS, TOP_ENTRY_LANES,
                                    design_steps)
from tritium.hw.head_layout import head_layout_of
from tritium.sim.golden.fixed import F_ACT
from tritium.sim.golden.model import QuantizedModel, embed
from .errors import InputError
from .head_packer import pack_head
from .packer import pack_ternary

__all__ = ["check_model", "run_inputs", "embedding_table", "ScratchRegion",
           "CompiledModel", "compile_model", "scratch_layout", "MemoryPlan",
           "memory_plan", "matrix_words", "program_fields", "program_length",
           "encode_instruction", "encode_top", "decode_top",
           "decode_instruction", "instruction_words", "pack_scale", "unpack_scale"]

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
                "attn": model.q_dim, "gate": model.ffn}
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
        Word addresses of the first instruction and of the io region (the run's inputs).
    states_address : int
        Word address of the run's final hidden states in the io region.
    no_head_program_address : int
        The program without the head (the same as ``program_address`` on a design
        without a device head).
    top_address : int or None
        Word address of the run's top-k in the io region (a device head), else None.
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
    top_address: object
    no_head_program_address: int
    states_address: int
    instructions: list
    qmodel: QuantizedModel
    config: AcceleratorConfig
    scratch: dict
    words: int


# Each layer's memory regions in program order: norm gains and the linears they feed.
_LAYER_REGIONS = ("attn_norm", "wq", "wk", "wv", "attn_sub_norm", "wo", "ffn_norm", "w_gate",
                  "w_up", "ffn_sub_norm", "w_down")
_NORM_FEATURES = {"attn_norm": "hidden", "attn_sub_norm": "q_dim", "ffn_norm": "hidden",
                  "ffn_sub_norm": "ffn"}
_LAYER_LINEARS = len(_LAYER_REGIONS) - len(_NORM_FEATURES)


def layer_length(config: AcceleratorConfig) -> int:
    """Instructions of one layer (:func:`_layer_program`): a NORM or LINEAR per region
    and ATTEND, 12; with a weight queue a PREFETCH per LINEAR more, 19."""
    return len(_LAYER_REGIONS) + 1 + (_LAYER_LINEARS if config.weight_queue else 0)


def program_length(config: AcceleratorConfig, head: bool = None) -> int:
    """Instructions of the program: LOAD (and EMBED), :func:`layer_length` per layer,
    STORE, (NORM, HEAD, STORE and, on a design of several steps, the choice's STORE:
    ``head``, by default whether the design has a device head), END."""
    tail = len(_head_program(config, None, scratch_layout(config), _Placeholders())) \
        if _with_head(config, head) else 0
    return len(_input_program(config, None)) + layer_length(config) * config.model.layers \
        + 2 + tail


def _with_head(config: AcceleratorConfig, head) -> bool:
    """Whether a program ends with the head: ``head``, default the design's; never on a
    design without a device head."""
    if head and config.head != "device":
        raise ValueError(f"accelerator {config.name!r} has no device head to program")
    return config.head == "device" if head is None else bool(head)


@dataclass(frozen=True)
class MemoryPlan:
    """Where everything below the KV cache goes, from the shapes alone.

    ``placement`` maps a region's name (``"layer0.wq"``, ``"layer0.attn_norm"``,
    ``"embedding"``, ``"output_norm"``, ``"head"``, ``"io"``, ``"program"``) to ``(word
    address, words)``, in address order from 0; ``words`` is the total; ``top_address``
    is where a device head's top-k goes (None without one); ``no_head_program_address``
    the program without the head (``program_address`` without a device head);
    ``states_address`` where the run's hidden states go. A linear takes the whole words
    of its packed stream as the TLMM reads it (:func:`matrix_words`), a norm those of
    its int16 gains.
    """
    placement: dict
    io_address: int
    program_address: int
    words: int
    top_address: object = None
    no_head_program_address: int = None
    states_address: int = None

    def layer(self, index: int) -> dict:
        """Region name -> word address of layer ``index``."""
        return {name: self.placement[f"layer{index}.{name}"][0] for name in _LAYER_REGIONS}


def matrix_words(config: AcceleratorConfig, chunks: int, blocks: int) -> int:
    """Bus words of a packed matrix of ``chunks`` K-chunks and ``blocks`` row blocks as
    the TLMM reads it: whole words of its port (``weight_port_words`` bus words each)."""
    port_bits = config.data_width * config.weight_port_words
    bits = chunks * blocks * config.tlmm.tile.word_bits
    return -(-bits // port_bits) * config.weight_port_words


def memory_plan(config: AcceleratorConfig) -> MemoryPlan:
    """The :class:`MemoryPlan` of ``config``'s model (no weights needed)."""
    cfg, tile = config.model, config.tlmm.tile
    word_bits = config.data_width
    shapes = cfg.linear_shapes()
    placement, address = {}, 0

    def reserve(name, words, align=1):
        nonlocal address
        address = -(-address // align) * align
        placement[name] = (address, words)
        address += words

    # With a weight port (AcceleratorConfig.weight_port) the TLMM and the head read whole
    # words of it: each matrix and the head start at one and fill their last (the
    # datapath divides LINEAR's and HEAD's addresses).
    align = config.weight_port_words
    for index in range(cfg.layers):
        for name in _LAYER_REGIONS:
            if name in shapes:
                rows, cols = tile.padded_shape(*shapes[name])
                reserve(f"layer{index}.{name}",
                        matrix_words(config, cols // tile.k_per_word, rows // tile.rows),
                        align)
            else:
                reserve(f"layer{index}.{name}",
                        -(-16 * getattr(cfg, _NORM_FEATURES[name]) // word_bits))
    if config.embedding == "device":
        reserve("embedding", cfg.vocab_size * config.embedding_row_words)
    if config.head == "device":
        reserve("output_norm", -(-16 * cfg.hidden // word_bits))
        # Read through the weight port: aligned to its words, as the matrices are.
        reserve("head", head_layout_of(config).words * align, align)
    io_address = address
    states = config.max_tokens * cfg.hidden // config.lanes
    inputs = _input_words(config)
    states_address = io_address + inputs
    top_address = states_address + states if config.head == "device" else None
    reserve("io", inputs + states + (config.head_k if config.head == "device" else 0))
    program_address = address
    per_instruction = instruction_words(word_bits // 8)
    reserve("program", program_length(config) * per_instruction)
    no_head_address = program_address
    if config.head == "device":
        no_head_address = address
        reserve("program_no_head", program_length(config, head=False) * per_instruction)
    return MemoryPlan(placement, io_address, program_address, address, top_address,
                      no_head_address, states_address)


class _Placeholders:
    """Constants of a program compiled from the shape alone: every scale and eps 0."""

    def eps(self, name, features):
        return 0

    def out_scale(self, index, name):
        return 0

    def score_scale(self):
        return 0


class _Constants:
    """A quantized model's constants as the instruction fields hold them."""

    def __init__(self, qmodel: QuantizedModel):
        self.qmodel = qmodel

    def eps(self, name, features):
        eps = int(self.qmodel.eps[features])
        if eps >= 1 << 32:
            raise InputError(f"the {name} eps term {eps} does not fit the instruction's u32")
        return eps

    def out_scale(self, index, name):
        return pack_scale(self.qmodel.layers[index].linears[name].out_scale)

    def score_scale(self):
        return pack_scale(self.qmodel.score_scale)


def program_fields(config: AcceleratorConfig, plan: MemoryPlan = None,
                   constants=None, head: bool = None) -> list:
    """The program as instruction fields (dicts with the opcode's name under ``"op"``):
    the inputs into ``x`` (LOAD io -> ``x``; with device embedding LOAD io's token ids
    -> ``qkv``, EMBED -> ``x``), 12 instructions per layer, STORE ``x`` -> the io
    region's states, with ``head`` (default: on a design with a device head) NORM,
    HEAD and the top-k's STORE, END.

    Everything that sets the program's work (opcodes, flags, beats, blocks, strides,
    scratch and memory addresses) comes from ``config`` and ``plan`` (default:
    :func:`memory_plan`); ``constants`` gives the scales and eps terms (default: 0, a
    program fit for timing, not for running). :func:`compile_model` and the performance
    model (:mod:`tritium.host.performance`) both take their program from here.
    """
    plan = plan or memory_plan(config)
    constants = constants or _Placeholders()
    scratch = scratch_layout(config)
    x = scratch["x"]
    program = _input_program(config, plan)
    for index in range(config.model.layers):
        layer = _layer_program(index, plan.layer(index), config, scratch, constants)
        if index:       # its attn_norm norms the last layer's w_down output: before it
            program.insert(len(program) - 1, layer.pop(0))
        program += layer
    program.append(dict(op="STORE", address=plan.states_address, src=x.base,
                        src_stride=x.stride, beats=x.beats))
    if _with_head(config, head):
        program += _head_program(config, plan, scratch, constants)
    program.append(dict(op="END"))
    return _with_prefetches(program) if config.weight_queue else program


def _with_prefetches(program: list) -> list:
    """``program`` with a PREFETCH of every LINEAR's matrix (a copy of its fields) one
    matrix ahead (docs/program.md): the first two at the start and before the first
    LINEAR, then each next one just before the LINEAR before it. So the weight queue
    holds at most two matrices not yet started when a PREFETCH issues, which its job
    queue takes (``WeightPrefetcher.JOBS``), and a PREFETCH never waits for a LINEAR
    that comes after it."""
    prefetches = [dict(fields, op="PREFETCH") for fields in program if fields["op"] == "LINEAR"]
    result, following = prefetches[:1], prefetches[1:]
    for fields in program:
        if fields["op"] == "LINEAR" and following:
            result.append(following.pop(0))
        result.append(fields)
    return result


def _head_program(config: AcceleratorConfig, plan: MemoryPlan, scratch, constants) -> list:
    """The output norm of ``x``, the head on the last token's codes, its top-k to io;
    on a design of several steps (``isa.design_steps``) also the choice, the top-k's
    first entry, after the step's tokens in the inputs, where the next step's LOAD reads
    its input (``plan`` None: the instructions without addresses, for counting them)."""
    x, top = scratch["x"], scratch["qkv"]
    hidden = config.model.hidden
    placement = plan.placement if plan else {"output_norm": (0, 0), "head": (0, 0)}
    program = [dict(op="NORM", address=placement["output_norm"][0], src=x.base,
                    src_stride=x.stride, beats=hidden // config.lanes,
                    eps=constants.eps("output_norm", hidden)),
               dict(op="HEAD", address=placement["head"][0], dst=top.base,
                    dst_stride=top.stride, beats=config.head_k),
               dict(op="STORE", flags=FLAG_ONE_TOKEN, address=plan.top_address if plan else 0,
                    src=top.base, src_stride=top.stride, beats=config.head_k)]
    if design_steps(config) > 1:
        program.append(dict(op="STORE", flags=FLAG_ONE_TOKEN | FLAG_AT_STEP,
                            address=plan.io_address if plan else 0, src=top.base,
                            src_stride=top.stride, beats=1))
    return program


def _input_words(config: AcceleratorConfig) -> int:
    """Words of the io region's inputs: the embeddings of ``max_tokens`` tokens, or
    with device embedding a token id a word; on a design of several steps as many as
    the steps too (a step's input at word ``step``) and one more (the last step's
    choice, stored after the step's tokens)."""
    if config.embedding != "device":
        return config.max_tokens * config.model.hidden // config.lanes
    steps = design_steps(config)
    return max(config.max_tokens, steps) + 1 if steps > 1 else config.max_tokens


def encode_top(indices, scores, config: AcceleratorConfig) -> np.ndarray:
    """The scratchpad beats (``len(indices)``, ``lanes``) int64 of a device head's top-k,
    as HEAD writes them and :func:`decode_top` reads them back: lane 0 the row, lanes 1
    and 2 the score's low 32 bits (as the int32 that holds them) and its high bits."""
    indices, scores = (np.asarray(a, dtype=np.int64) for a in (indices, scores))
    low = scores & 0xFFFFFFFF
    beats = np.zeros((len(indices), config.lanes), dtype=np.int64)
    beats[:, :TOP_ENTRY_LANES] = np.stack(
        [indices, (low ^ 0x80000000) - 0x80000000, scores >> 32], axis=1)
    return beats


def decode_top(data: bytes, config: AcceleratorConfig):
    """The top-k a device head stored: ``(indices, scores)``, int64 arrays of the entries
    in ``data`` (whole words, best first): lane 0 of a word is the row, lanes 1 and 2
    the score's low 32 bits and its sign-extended high bits (``isa.TOP_ENTRY_LANES``)."""
    words = np.frombuffer(data, dtype="<u4").reshape(-1, config.lanes).astype(np.int64)
    high = words[:, 2] - ((words[:, 2] >> 31) << 32)            # the signed high half
    return words[:, 0], (high << 32) | words[:, 1]


def _input_program(config: AcceleratorConfig, plan) -> list:
    """The instructions that put the run's inputs into ``x``: the embeddings from io, or
    the token ids from io and their rows of the embedding table (``plan`` None: the
    instructions without addresses, for counting them)."""
    scratch = scratch_layout(config)
    x, ids = scratch["x"], scratch["qkv"]
    io = plan.io_address if plan else 0
    if config.embedding == "host":
        return [dict(op="LOAD", address=io, dst=x.base, dst_stride=x.stride, beats=x.beats)]
    table = plan.placement["embedding"][0] if plan else 0
    # On a design of several steps a step reads its input where the one before stored
    # its choice (_head_program).
    flags = FLAG_AT_STEP if design_steps(config) > 1 else 0
    return [dict(op="LOAD", flags=flags, address=io, dst=ids.base, dst_stride=ids.stride,
                 beats=1),
            dict(op="EMBED", address=table, src=ids.base, src_stride=ids.stride,
                 dst=x.base, dst_stride=x.stride, beats=x.beats)]


def embedding_table(model, config: AcceleratorConfig) -> bytes:
    """The device's embedding table: row ``i`` is ``embed(model, [i])``, int32, or int16
    (Q3.12) in a 16-bit table, which holds those values exactly when they lie in
    [-8, 8); :class:`InputError` for a model whose embedding leaves that range."""
    rows = _embedding_rows(model, config)
    return rows.astype("<i4" if config.embedding_bits == 32 else "<i2").tobytes()


def _embedding_rows(model, config: AcceleratorConfig) -> np.ndarray:
    """``embed`` of every id, checked against the table's width."""
    rows = embed(model, np.arange(model.config.vocab_size))
    if config.embedding_bits == 16 and (rows.min(initial=0) < -2 ** 15
                                        or rows.max(initial=0) >= 2 ** 15):
        peak = int(np.abs(rows).max())
        raise InputError(f"model {model.config.name!r} has embedding values up to "
                         f"{peak / 2.0 ** F_ACT:g}, beyond a 16-bit table's [-8, 8) "
                         f"(Q3.12); accelerator {config.name!r} needs embedding_bits = 32 "
                         f"(or embedding = \"host\")")
    return rows


def rope_table_image(model: ModelConfig, lanes: int, data_width: int) -> bytes:
    """RoPE's cos/sin table of ``model`` as a design of ``lanes`` lanes and
    ``data_width``-bit words reads it with ``rope_table = "memory"``: per position, words
    of ``n`` = :func:`rope_row_pairs` pairs each (pairs ``r*n .. r*n + n-1`` in word
    ``r``), as ``rope_row_layout``: each pair's int16 cos then sin from bit 0, the rest of
    the word zero."""
    cos, sin = rope_table(model)
    pairs = np.stack([np.array(cos), np.array(sin)], axis=-1).astype("<i2")
    rows = pairs.reshape(-1, 2 * rope_row_pairs(model, lanes))
    padded = np.zeros((len(rows), data_width // 16), dtype="<i2")
    padded[:, :rows.shape[1]] = rows
    return padded.tobytes()


def unpack_rope_table(data: bytes, model: ModelConfig, lanes: int, data_width: int):
    """The (cos, sin) tables, int64 arrays of (max_context, head_dim / 2), of the bytes
    :func:`rope_table_image` lays out."""
    words = np.frombuffer(data, dtype="<i2").reshape(-1, data_width // 16)
    pairs = words[:, :2 * rope_row_pairs(model, lanes)].reshape(model.max_context, -1, 2)
    return pairs[..., 0].astype(np.int64), pairs[..., 1].astype(np.int64)


def run_inputs(model, config: AcceleratorConfig, token_ids) -> bytes:
    """What the host writes to the io region for a run of ``token_ids``: with device
    embedding one word per token, the id in its low 32 bits; with host embedding the
    tokens' embeddings (``golden.model.embed``), int32 Q19.12, token after token."""
    ids = np.asarray(token_ids, dtype=np.int64)
    if config.embedding == "host":
        return embed(model, ids).astype("<i4").tobytes()
    words = np.zeros((len(ids), config.lanes), dtype="<u4")
    words[:, 0] = ids
    return words.tobytes()


def check_model(model, config: AcceleratorConfig) -> None:
    """Raise :class:`InputError` unless ``model`` can run on ``config``'s design: its
    shape, context and RoPE theta (what :func:`compile_model` checks first)."""
    try:
        config.check_model(model.config)
    except ValueError as error:
        raise InputError(str(error)) from None
    if config.embedding == "device":
        _embedding_rows(model, config)          # the table's width holds its values
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
    qmodel = QuantizedModel(model, config.head_weights)
    cfg = config.model
    word_bytes = config.data_width // 8
    plan = memory_plan(config)

    image = []

    def place(name, data):
        address, words = plan.placement[name]
        # Padded with zeros to the region's whole words (a weight-port word, for a matrix).
        assert words * word_bytes - word_bytes * config.weight_port_words < len(data) \
            <= words * word_bytes, (name, len(data), words)
        data = bytes(data) + bytes(words * word_bytes - len(data))
        image.append((address, data))

    for index, layer in enumerate(qmodel.layers):
        for name in _LAYER_REGIONS:
            if name in layer.linears:
                data = pack_ternary(layer.linears[name].weights, config.tlmm.tile).data
            else:
                data = getattr(layer, name).values.astype("<i2").tobytes()
            place(f"layer{index}.{name}", data)
    if config.embedding == "device":
        table = embedding_table(model, config)
        # A model with a smaller vocabulary than the design's leaves the rest zero.
        place("embedding", table + bytes(plan.placement["embedding"][1] * word_bytes
                                         - len(table)))
    if config.head == "device":
        place("output_norm", qmodel.output_norm.values.astype("<i2").tobytes())
        place("head", pack_head(qmodel.head, config.weight_memory.data_width))

    padding = bytes(instruction_words(word_bytes) * word_bytes - INSTRUCTION_BYTES)
    def encoded(head):
        fields = program_fields(config, plan, _Constants(qmodel), head=head)
        return [_instruction(**instruction) for instruction in fields]

    program = encoded(None)
    place("program", b"".join(code + padding for code in program))
    if "program_no_head" in plan.placement:
        place("program_no_head", b"".join(code + padding for code in encoded(False)))

    placement = dict(plan.placement)
    if config.rope_table == "memory":
        placement["rope"] = (config.rope_base, config.rope_words)
        image.append((config.rope_base,
                      rope_table_image(cfg, config.lanes, config.data_width)))
    if plan.words > config.rope_base:
        table = " and RoPE table" if config.rope_words else ""
        raise InputError(f"model {cfg.name!r} needs {plan.words} words of memory for its "
                         f"weights, gains, io and program, but accelerator {config.name!r} "
                         f"has {config.rope_base} below its KV cache{table}")
    return CompiledModel(image=image, placement=placement,
                         program_address=plan.program_address, io_address=plan.io_address,
                         top_address=plan.top_address,
                         no_head_program_address=plan.no_head_program_address,
                         states_address=plan.states_address,
                         instructions=[decode_instruction(code) for code in program],
                         qmodel=qmodel, config=config, scratch=scratch_layout(config),
                         words=plan.words)


def _instruction(op: str, **fields) -> bytes:
    try:
        return encode_instruction(opcode=OPCODES[op], **fields)
    except ValueError as error:
        raise InputError(f"cannot encode a {op} instruction: {error}") from None


def _layer_program(index, address, config, scratch, constants) -> list:
    """The 12 instructions of one decoder layer (``GoldenModel.layer``), as fields."""
    cfg, lanes, tlmm = config.model, config.lanes, config.tlmm
    x, qkv, attn, gate = (scratch[name] for name in ("x", "qkv", "attn", "gate"))

    def norm(name, source, features, follows=True):
        """A NORM of ``source``; with ``follows`` (``FLAG_NEXT``) of the output of the
        LINEAR after it, which writes ``source``."""
        return dict(op="NORM", flags=FLAG_NEXT if follows else 0, address=address[name],
                    src=source.base, src_stride=source.stride, beats=features // lanes,
                    eps=constants.eps(name, features))

    def linear(name, target, offset=0, flags=0, **fields):
        rows, cols = tlmm.tile.padded_shape(*cfg.linear_shapes()[name])
        return dict(op="LINEAR", flags=flags, address=address[name], dst=target.base + offset,
                    dst_stride=target.stride, beats=cols // tlmm.k_per_word,
                    blocks=rows // tlmm.rows, scale=constants.out_scale(index, name), **fields)

    # The norms of a LINEAR's output norm it as it is written (FLAG_NEXT, just before
    # that LINEAR): ffn_norm of wo's, ffn_sub_norm of w_up's and, but in the first layer
    # (after EMBED or LOAD), attn_norm of the last layer's w_down output (program_fields
    # moves it before that LINEAR). attn_sub_norm norms ATTEND's output, read back.
    return [
        norm("attn_norm", x, cfg.hidden, follows=index > 0),
        linear("wq", qkv),
        linear("wk", qkv, cfg.q_dim // lanes),
        linear("wv", qkv, (cfg.q_dim + cfg.kv_dim) // lanes),
        dict(op="ATTEND", layer=index, src=qkv.base, src_stride=qkv.stride,
             beats=qkv.beats, dst=attn.base, dst_stride=attn.stride,
             scale=constants.score_scale()),
        norm("attn_sub_norm", attn, cfg.q_dim, follows=False),
        norm("ffn_norm", x, cfg.hidden),
        linear("wo", x, flags=FLAG_ACCUMULATE),
        linear("w_gate", gate),
        norm("ffn_sub_norm", gate, cfg.ffn),
        # up never reaches the scratchpad: the gating takes it from the LINEAR and
        # writes act(gate) * up over the gate vector.
        linear("w_up", gate, flags=FLAG_GATE, src=gate.base, src_stride=gate.stride),
        linear("w_down", x, flags=FLAG_ACCUMULATE),
    ]
