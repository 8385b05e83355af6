"""The controller's datapath: the units and the streams between them, by opcode
(docs/accelerator.md)."""

from types import SimpleNamespace

from amaranth import Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..attention.block import AttentionBlock
from ..config import AcceleratorConfig
from ..elementwise import Dequantize, Gating, NormQuant, ResidualAdd, ScaleMultiply
from ..layouts import vector_beat_layout
from ..memory.arbiter import PortArbiter
from ..memory.mux import PortMux, PortRegisters
from ..memory.port import MemoryPortSignature
from ..tlmm.core import TLMMCore
from ..tlmm.split import ResultSplitter
from ..weights import WeightPrefetcher
from .embed import EmbedFetcher, HalfWordWidener
from .feeders import CodesFeeder, CodesWriter, GainBuffer, GainFeeder, codes_row_beats
from .head import HeadUnit
from .interface import (COMMANDS, UNIT_CLIENTS, ExecuteSignature, accumulates, at_step,
                        gates, norms_next, weight_clients)
from .isa import FLAG_ONE_TOKEN, OPCODES
from .vectors import VectorReader, VectorWriter

__all__ = ["Datapath"]


class Datapath(wiring.Component):
    """The units the instructions run on, their streams connected for ``execute.opcode``.

    The scratchpad (``scratch_words`` beats of ``lanes`` int32) with a vector reader
    and a writer; the gain feeder, NormQuant and the codes buffer (NORM); the codes
    feeder, TLMM core, dequantize and residual add (LINEAR); gating (a LINEAR with
    ``FLAG_GATE``, whose output is the gating's ``up``); the attention block (ATTEND);
    LOAD and STORE stream between the memory and the scratchpad, and EMBED's fetcher
    reads the rows of the token ids that the reader brings from the scratchpad, into the
    scratchpad; the head unit (HEAD, a design with ``config.head == "device"``) scores
    the run's last token's codes from the codes buffer and writes its top-k to the
    scratchpad. HEAD, and a STORE with ``FLAG_ONE_TOKEN``, move one vector whatever the
    run's ``tokens``. A command of ``execute.commands`` goes to its unit, with a payload
    taken from ``execute.instruction``, ``tokens``, ``position`` and ``execute.step`` (a
    step's tokens are at ``position + step``); ``execute.done`` says the instruction's
    last result is stored: the writer is idle, every token's codes and scale of a NORM
    are in, or a STORE's memory write is acknowledged.

    The units' memory ports take turns on ``memory``: the one ``execute.client`` names
    is connected, the others see a port that never moves. With ``config.weight_port``
    the TLMM core and the head unit, the two bulk streams, take turns on ``weights``
    instead, a port ``weight_port_words`` bus words wide; LINEAR's and HEAD's
    ``address`` stay in bus words (the compiler aligns every matrix and the head to a
    weight-port word). With ``kv_reads = "weights"`` the attention block's passes read
    the KV cache through it too, while ATTEND executes (its writes stay on ``memory``).
    With ``config.weight_queue`` a PREFETCH hands its matrix to the weight prefetcher,
    which reads it ahead into its queue whatever executes, and LINEAR's TLMM takes the
    words from the queue; the clients then share the weight port through an arbiter.

    Members
    -------
    execute : ``In(ExecuteSignature())``
    position, tokens : ``In(32)`` (the run's registers)
    memory : ``Out(MemoryPortSignature(config.memory))``
    weights : ``Out(MemoryPortSignature(config.weight_memory))`` (only with ``config.weight_port``)
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        super().__init__({
            "execute": In(ExecuteSignature()),
            "position": In(32), "tokens": In(32),
            "memory": Out(MemoryPortSignature(config.memory)),
            **({"weights": Out(MemoryPortSignature(config.weight_memory))}
               if config.weight_port else {}),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, execute = self._config, self.execute
        units = _units(m, cfg)
        m.submodules.ports = ports = PortMux(cfg.memory, UNIT_CLIENTS)
        for client in UNIT_CLIENTS:
            # Each unit's port registered before the multiplexer: a unit's command and
            # read-data logic ends at these registers, not in the memory (PortRegisters).
            registers = m.submodules[f"{client}_port_registers"] = PortRegisters(cfg.memory)
            wiring.connect(m, units.memory[client], registers.client)
            wiring.connect(m, registers.memory, getattr(ports, client))
        wiring.connect(m, ports.memory, wiring.flipped(self.memory))
        m.d.comb += ports.select.eq(execute.client)
        if cfg.weight_port:
            _weight_port(m, cfg, units, execute, wiring.flipped(self.weights))
        _route(m, cfg, units, execute, self.tokens)
        _payloads(m, cfg, units, execute, self.tokens, self.position)
        _hand_over(m, units, execute)
        m.d.comb += [
            execute.done.eq(_done(m, units, execute, self.tokens)),
            # A NORM's codes writer counts its tokens from zero again.
            units.codes_writer.restart.eq(execute.start &
                                          (execute.instruction.opcode == OPCODES["NORM"])),
        ]
        return m


def _units(m, cfg):
    """The units as submodules of ``m``, with their memories; a namespace of them, and
    ``memory``: each client's port on the units' port; with a weight port,
    ``weight_memory``: the TLMM's and the head's ports on it (their clients on the units'
    port then never move) and, with ``kv_reads = "weights"``, the KV reader's."""
    lanes, tokens = cfg.lanes, cfg.max_tokens
    u = SimpleNamespace()
    m.submodules.scratch = scratch = Memory(shape=unsigned(32 * lanes), depth=cfg.scratch_words,
                                            init=[])
    m.submodules.reader = u.reader = VectorReader(lanes, cfg.scratch_words, tokens)
    m.submodules.writer = u.writer = VectorWriter(lanes, cfg.scratch_words, tokens)
    port = scratch.read_port()
    m.d.comb += [port.addr.eq(u.reader.read_addr), port.en.eq(u.reader.read_en),
                 u.reader.read_data.eq(port.data)]
    port = scratch.write_port()
    m.d.comb += [port.addr.eq(u.writer.write_addr), port.data.eq(u.writer.write_data),
                 port.en.eq(u.writer.write_en)]

    # The codes buffer: NormQuant's codes in, the TLMM core's activations out.
    m.submodules.codes = codes = Memory(shape=unsigned(8 * lanes),
                                        depth=tokens * codes_row_beats(cfg), init=[])
    m.submodules.norm = u.norm = NormQuant(cfg.elementwise, gain=True)
    m.submodules.gains = u.gains = GainFeeder(cfg)
    m.submodules.gain_buffer = u.gain_buffer = GainBuffer(cfg)
    m.submodules.codes_writer = u.codes_writer = CodesWriter(cfg)
    m.submodules.feeder = u.feeder = CodesFeeder(cfg)
    wiring.connect(m, u.norm.codes, u.codes_writer.codes)
    wiring.connect(m, u.norm.scale, u.codes_writer.scale)
    port = codes.write_port()
    m.d.comb += [port.addr.eq(u.codes_writer.write_addr), port.data.eq(u.codes_writer.write_data),
                 port.en.eq(u.codes_writer.write_en)]
    u.codes_read = codes.read_port()
    m.d.comb += u.feeder.read_data.eq(u.codes_read.data)

    queued = bool(cfg.weight_queue)
    m.submodules.tlmm = u.tlmm = TLMMCore(cfg.tlmm, cfg.weight_memory, queued=queued)
    wiring.connect(m, u.feeder.acts, u.tlmm.acts)
    # With a weight queue, PREFETCH's matrices are read ahead into it and the TLMM takes
    # its words from there (docs/accelerator.md, "Weight queue").
    u.prefetch = None
    if queued:
        m.submodules.prefetch = u.prefetch = WeightPrefetcher(cfg.tlmm, cfg.weight_memory,
                                                              cfg.weight_queue)
        wiring.connect(m, u.prefetch.words, u.tlmm.queue)
        wiring.connect(m, u.prefetch.loads, u.tlmm.loads)
    m.submodules.splitter = u.splitter = ResultSplitter(cfg.tlmm, lanes)
    wiring.connect(m, u.tlmm.results, u.splitter.results)
    m.submodules.dequant = u.dequant = Dequantize(lanes, cfg.tlmm.acc_width)
    m.submodules.out_scale = u.out_scale = ScaleMultiply()
    m.submodules.residual = u.residual = ResidualAdd(lanes)
    m.submodules.gating = u.gating = Gating(lanes, cfg.model.activation)
    m.submodules.attention = u.attention = AttentionBlock.of_design(cfg)

    m.submodules.embed = u.embed = EmbedFetcher(cfg)
    # A 16-bit table's words become two beats each; a 32-bit table's words are beats (a
    # design without a table has no widener to pay for).
    u.widener = None
    if cfg.embedding == "device" and cfg.embedding_bits == 16:
        m.submodules.widener = u.widener = HalfWordWidener(cfg)

    # The head unit reads the codes buffer in turn with the codes feeder (_route); a
    # design without it gives its memory client a port that never moves.
    if cfg.head == "device":
        m.submodules.head = u.head = HeadUnit(cfg)
        m.d.comb += u.head.read_data.eq(u.codes_read.data)
        head_memory = u.head.memory
    else:
        u.head = None
        head_memory = None

    # LOAD and STORE use the port themselves, and EMBED through its fetcher's read
    # commands (_route, _payloads, _hand_over).
    u.move = MemoryPortSignature(cfg.memory).create(path=("move_port",))
    u.memory = {"move": u.move, "norm": u.gains.memory, "attend": u.attention.memory}
    streams = {"linear": None if queued else u.tlmm.memory, "head": head_memory}
    weight_ports = {"linear": (u.prefetch or u.tlmm, "memory"), "head": (u.head, "memory"),
                    "attend": (u.attention, "key_memory")}
    u.weight_memory = {name: getattr(*weight_ports[name]) for name in weight_clients(cfg)}
    for name, port in streams.items():
        if port is None or cfg.weight_port:     # a port that never moves
            port = MemoryPortSignature(cfg.memory).create(path=(f"no_{name}_port",))
        u.memory[name] = port
    return u


def _weight_port(m, cfg, u, execute, port):
    """The weight port's clients (``u.weight_memory``) onto ``port``, and which of them
    each word it delivers goes to (``execute.weight_client``).

    Without a weight queue they take turns: the TLMM's has the port unless another's
    instruction executes. Unregistered here: a multiplexer in front of the top's
    registers (WEIGHT_PORT_LATENCY; a register stage of 513 bits each way costs about
    560 LUTs on the XCK26). With one, the prefetcher reads while other instructions
    execute, so the clients share the port through an arbiter (one register stage on
    the read commands, :attr:`PortArbiter.LATENCY`) in which the prefetcher reads in the
    background: the KV reader's and the head's reads go first, and wait only for the
    prefetcher's few bursts in flight."""
    clients = tuple(u.weight_memory)
    indices = [UNIT_CLIENTS.index(client) for client in clients]
    if len(clients) == 1:
        wiring.connect(m, u.weight_memory[clients[0]], port)
        m.d.comb += execute.weight_client.eq(indices[0])
    elif cfg.weight_queue:
        m.submodules.weight_ports = arbiter = PortArbiter(cfg.weight_memory, len(clients),
                                                          background=True)
        for index, client in enumerate(clients):
            wiring.connect(m, u.weight_memory[client], arbiter.client[index])
        wiring.connect(m, arbiter.memory, port)
        for client, index in zip(clients, indices):
            read = u.weight_memory[client].read_data
            with m.If(read.valid & read.ready):
                m.d.comb += execute.weight_client.eq(index)
    else:
        m.submodules.weight_ports = ports = PortMux(cfg.weight_memory, clients)
        for client in clients:
            wiring.connect(m, u.weight_memory[client], getattr(ports, client))
        wiring.connect(m, ports.memory, port)
        m.d.comb += execute.weight_client.eq(indices[0])
        for index, client in enumerate(clients[1:], start=1):
            with m.If(execute.client == UNIT_CLIENTS.index(client)):
                m.d.comb += [ports.select.eq(index), execute.weight_client.eq(indices[index])]


def _route(m, cfg, u, execute, tokens):
    """Connect the streams the opcode uses; the others stay idle."""
    instruction, opcode = execute.instruction, execute.opcode
    # TLMM results: R accumulators of one row block per beat, cut into vector beats by
    # the splitter; a token's vector ends with its last row block's last beat. Each
    # token's scale is its norm scale times out_scale.
    beat = Signal(16)
    result, vector_beats = u.splitter.parts, _linear_beats(cfg, instruction)
    m.d.comb += [u.dequant.acc.valid.eq(result.valid), result.ready.eq(u.dequant.acc.ready),
                 u.dequant.acc.payload.acc.eq(result.payload.acc),
                 u.dequant.acc.payload.last.eq(beat == vector_beats - 1)]
    with m.If(result.valid & result.ready):
        m.d.sync += beat.eq(Mux(beat == vector_beats - 1, 0, beat + 1))
    # The tokens' scales times out_scale, formed in a pipeline ahead of Dequantize (a
    # NORM's scales are all in before the LINEAR that reads them starts).
    scale_token = Signal(range(cfg.max_tokens + 1))
    operands = u.out_scale.operands
    m.d.comb += [u.codes_writer.token_scale.eq(scale_token),
                 operands.payload.a.eq(u.codes_writer.selected_scale),
                 operands.payload.b.eq(instruction.scale[:26]),
                 operands.valid.eq((opcode == OPCODES["LINEAR"]) & (scale_token != tokens))]
    wiring.connect(m, u.out_scale.product, u.dequant.scale)
    with m.If(operands.valid & operands.ready):
        m.d.sync += scale_token.eq(scale_token + 1)
    with m.If(execute.start):
        m.d.sync += [scale_token.eq(0), beat.eq(0)]

    # A NORM's eps and gains are the instruction's; a NORM of the next LINEAR's output
    # (execute.follow) keeps its eps and its gains (in the gain buffer) for that LINEAR.
    eps = Signal.like(instruction.eps)
    norm_starts = execute.start & (instruction.opcode == OPCODES["NORM"])
    with m.If(norm_starts):
        m.d.sync += eps.eq(instruction.eps)
    m.d.comb += [u.norm.eps.payload.eq(eps),
                 u.norm.eps.valid.eq((opcode == OPCODES["NORM"]) & ~norms_next(instruction) |
                                     (opcode == OPCODES["LINEAR"]) & execute.follow),
                 u.gain_buffer.start.eq(norm_starts & norms_next(instruction)),
                 u.gain_buffer.beats.eq(instruction.beats), u.gain_buffer.tokens.eq(tokens),
                 u.attention.score_scale.eq(instruction.scale[:26])]
    head_beats = cfg.attention.io_beats_per_head
    head_beat = Signal(range(head_beats))
    codes_reader = u.feeder
    if u.head is not None:
        codes_reader = _choose(opcode == OPCODES["HEAD"], u.head, u.feeder)
    m.d.comb += [u.codes_read.addr.eq(codes_reader.read_addr),
                 u.codes_read.en.eq(codes_reader.read_en)]
    with m.Switch(opcode):
        with m.Case(OPCODES["LOAD"]):
            _words_to_beats(m, u.move.read_data, u.writer.beats)
        with m.Case(OPCODES["EMBED"]):
            wiring.connect(m, u.reader.beats, u.embed.ids)
            if u.widener is None:
                _words_to_beats(m, u.move.read_data, u.writer.beats)
            else:
                wiring.connect(m, wiring.flipped(u.move.read_data), u.widener.words)
                wiring.connect(m, u.widener.beats, u.writer.beats)
        with m.Case(OPCODES["STORE"]):
            out = u.move.write_data
            m.d.comb += [out.valid.eq(u.reader.beats.valid),
                         out.payload.eq(u.reader.beats.payload.values),
                         u.reader.beats.ready.eq(out.ready)]
        with m.Case(OPCODES["NORM"]):
            with m.If(norms_next(instruction)):
                wiring.connect(m, u.gains.gains, u.gain_buffer.fill)
            with m.Else():
                wiring.connect(m, u.reader.beats, u.norm.values)
                wiring.connect(m, u.gains.gains, u.norm.gains)
        with m.Case(OPCODES["LINEAR"]):
            out = stream.Signature(vector_beat_layout(cfg.lanes)).create(path=("linear_out",))
            with m.If(accumulates(instruction)):
                wiring.connect(m, u.reader.beats, u.residual.residual)
                wiring.connect(m, u.dequant.out, u.residual.update)
                wiring.connect(m, u.residual.out, wiring.flipped(out))
            with m.Elif(gates(instruction)):
                # The FFN gating fused: the LINEAR's output is up, beside the gate vector.
                wiring.connect(m, u.reader.beats, u.gating.gate)
                wiring.connect(m, u.dequant.out, u.gating.up)
                wiring.connect(m, u.gating.out, wiring.flipped(out))
            with m.Else():
                wiring.connect(m, u.dequant.out, wiring.flipped(out))
            # A NORM of this output (execute.follow) takes each beat as it is written.
            _tee(m, out, u.writer.beats, u.norm.values, execute.follow)
            wiring.connect(m, u.gain_buffer.gains, u.norm.gains)
        with m.Case(OPCODES["ATTEND"]):
            # The block takes the QKV row head by head: ``last`` ends each head.
            qkv, row = u.attention.qkv, u.reader.beats
            m.d.comb += [qkv.valid.eq(row.valid), row.ready.eq(qkv.ready),
                         qkv.payload.values.eq(row.payload.values),
                         qkv.payload.last.eq(head_beat == head_beats - 1)]
            with m.If(qkv.valid & qkv.ready):
                m.d.sync += head_beat.eq(Mux(head_beat == head_beats - 1, 0, head_beat + 1))
            wiring.connect(m, u.attention.out, u.writer.beats)
        if u.head is not None:
            with m.Case(OPCODES["HEAD"]):
                wiring.connect(m, u.head.beats, u.writer.beats)


def _tee(m, source, first, second, both):
    """``source``'s beats to ``first``, and with ``both`` to ``second`` too: a beat leaves
    when every sink it goes to takes it."""
    m.d.comb += [first.payload.eq(source.payload), second.payload.eq(source.payload),
                 first.valid.eq(source.valid & (second.ready | ~both)),
                 second.valid.eq(source.valid & first.ready & both),
                 source.ready.eq(first.ready & (second.ready | ~both))]


def _choose(condition, first, second):
    """The codes buffer's read address and enable of ``first`` if ``condition``, else of
    ``second``."""
    return SimpleNamespace(read_addr=Mux(condition, first.read_addr, second.read_addr),
                           read_en=Mux(condition, first.read_en, second.read_en))


def _words_to_beats(m, words, beats):
    """Memory words straight into a stream of beats: a word is ``lanes`` int32 values."""
    m.d.comb += [beats.valid.eq(words.valid), beats.payload.values.eq(words.payload.data),
                 words.ready.eq(beats.ready)]


def _linear_beats(cfg, instruction):
    """A LINEAR's vector beats per token: its row blocks, each ``beats_per_block``
    beats of the lanes."""
    return instruction.blocks * cfg.beats_per_block


def _weight_address(cfg, address):
    """A LINEAR's or HEAD's address (bus words) in the words of the port it reads
    through: the compiler aligned the matrix or head to that port's words."""
    return address[exact_log2(cfg.weight_port_words):] if cfg.weight_port else address


def _payloads(m, cfg, u, execute, tokens, position):
    """The commands' payloads from the instruction (a field a command does not use for
    this opcode is a don't-care)."""
    instruction, opcode = execute.instruction, execute.opcode
    is_op = {name: opcode == code for name, code in OPCODES.items()}
    w, a = u.writer.command.payload, u.reader.command.payload
    # HEAD writes one vector (the top-k), a STORE with FLAG_ONE_TOKEN stores one.
    one_vector = is_op["HEAD"] | is_op["STORE"] & ((instruction.flags & FLAG_ONE_TOKEN) != 0)
    vectors = Mux(one_vector, 1, tokens)
    words = instruction.beats * vectors
    linear_beats = _linear_beats(cfg, instruction)
    reads_destination = is_op["LINEAR"] & ~gates(instruction)
    m.d.comb += [
        w.base.eq(instruction.dst), w.stride.eq(instruction.dst_stride), w.tokens.eq(vectors),
        w.beats.eq(Mux(is_op["LINEAR"], linear_beats,
                       Mux(is_op["ATTEND"], cfg.model.q_dim // cfg.lanes, instruction.beats))),
        # A LINEAR's reader reads the destination it accumulates into, or the gate
        # vector at src of one that gates.
        a.base.eq(Mux(reads_destination, instruction.dst, instruction.src)),
        a.stride.eq(Mux(reads_destination, instruction.dst_stride, instruction.src_stride)),
        # An EMBED's reader reads one beat per token: the id in its lane 0.
        a.beats.eq(Mux(is_op["LINEAR"], linear_beats,
                       Mux(is_op["EMBED"], 1, instruction.beats))),
        a.tokens.eq(vectors),
        u.gains.command.payload.address.eq(instruction.address),
        u.gains.command.payload.beats.eq(instruction.beats),
        # A NORM of the next LINEAR's output reads its gains once, into the gain buffer.
        u.gains.command.payload.tokens.eq(Mux(norms_next(instruction), 1, tokens)),
        u.tlmm.job.payload.base.eq(_weight_address(cfg, instruction.address)),
        u.tlmm.job.payload.chunks.eq(instruction.beats),
        u.tlmm.job.payload.row_blocks.eq(instruction.blocks),
        u.tlmm.job.payload.tokens.eq(tokens),
        *([u.prefetch.job.payload.eq(u.tlmm.job.payload)] if u.prefetch is not None else []),
        u.feeder.command.payload.chunks.eq(instruction.beats),
        u.feeder.command.payload.tokens.eq(tokens),
        u.attention.job.payload.layer.eq(instruction.layer),
        u.attention.job.payload.start.eq(position + execute.step),
        u.attention.job.payload.tokens.eq(tokens),
        u.embed.job.payload.base.eq(instruction.address),
        # A row's words: its beats, or half of them in a 16-bit table.
        u.embed.job.payload.words.eq(instruction.beats >> 1 if cfg.embedding_bits == 16
                                     else instruction.beats),
        u.embed.job.payload.tokens.eq(tokens),
    ]
    # With FLAG_AT_STEP a LOAD reads the step's input at ``step`` words on, a STORE
    # writes the step's choice after the step's tokens (docs/program.md, "Steps").
    stepped = at_step(instruction)
    m.d.comb += [u.move.read_cmd.payload.addr.eq(
                     instruction.address + Mux(stepped, execute.step, 0)),
                 u.move.write_cmd.payload.addr.eq(
                     instruction.address + Mux(stepped, execute.step + tokens, 0))]
    for command in (u.move.read_cmd, u.move.write_cmd):
        m.d.comb += command.payload.words.eq(words)
    with m.If(is_op["EMBED"]):
        m.d.comb += u.move.read_cmd.payload.eq(u.embed.read_cmd.payload)
    if u.head is not None:
        m.d.comb += [u.head.job.payload.base.eq(_weight_address(cfg, instruction.address)),
                     u.head.job.payload.token.eq(tokens - 1)]


def _hand_over(m, u, execute):
    """Each of ``execute.commands`` to its unit; "memory" is LOAD's read or STORE's write.
    An EMBED's reads are its fetcher's, one per token."""
    opcode = execute.opcode
    embed = opcode == OPCODES["EMBED"]
    units = {"writer": u.writer.command, "reader": u.reader.command,
             "gains": u.gains.command, "tlmm": u.tlmm.job,
             "feeder": u.feeder.command, "attention": u.attention.job, "embed": u.embed.job,
             "head": u.head.job if u.head is not None else None,
             "prefetch": u.prefetch.job if u.prefetch is not None else None}
    for name in COMMANDS:
        command = getattr(execute.commands, name)
        if units.get(name, True) is None:
            continue            # never offered: the sequencer refuses HEAD, PREFETCH
        if name == "memory":
            load, store = opcode == OPCODES["LOAD"], opcode == OPCODES["STORE"]
            read, write = u.move.read_cmd, u.move.write_cmd
            m.d.comb += [read.valid.eq(command.valid & load | u.embed.read_cmd.valid & embed),
                         u.embed.read_cmd.ready.eq(embed & read.ready),
                         write.valid.eq(command.valid & store),
                         command.ready.eq(load & read.ready | store & write.ready)]
        else:
            m.d.comb += [units[name].valid.eq(command.valid), command.ready.eq(units[name].ready)]


def _done(m, u, execute, tokens):
    """Whether the instruction's last result is stored; the STORE's write
    acknowledgement is taken while the sequencer waits for it."""
    opcode = execute.opcode
    done = Signal()
    m.d.comb += u.move.write_done.ready.eq(execute.waiting & (opcode == OPCODES["STORE"]))
    with m.Switch(opcode):
        with m.Case(OPCODES["STORE"]):
            m.d.comb += done.eq(u.move.write_done.valid)
        with m.Case(OPCODES["NORM"]):
            m.d.comb += done.eq(Mux(norms_next(execute.instruction), u.gain_buffer.filled,
                                    u.codes_writer.done == tokens))
        with m.Case(OPCODES["LINEAR"]):
            m.d.comb += done.eq(u.writer.idle & (~execute.follow |
                                                 (u.codes_writer.done == tokens)))
        with m.Default():
            m.d.comb += done.eq(u.writer.idle)
    return done
