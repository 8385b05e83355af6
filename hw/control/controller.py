"""The controller: runs the host-compiled program over the units (docs/program.md)."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..attention.block import AttentionBlock
from ..config import AcceleratorConfig
from ..elementwise import Dequantize, Gating, NormQuant, ResidualAdd
from ..fixedpoint import scale_layout, scale_mul
from ..memory.mux import PortMux
from ..memory.port import MemoryPortSignature
from ..tlmm.core import TLMMCore
from .feeders import CodesFeeder, CodesWriter, GainFeeder, codes_row_beats
from .isa import FIELDS, FLAG_ACCUMULATE, INSTRUCTION_BYTES, OPCODES, STATUS
from .vectors import VectorReader, VectorWriter

__all__ = ["Controller", "instruction_layout", "CONTROLLER_COUNTERS", "COUNTER_OF_OPCODE",
           "WORD_COUNTERS"]

# Which memory client each opcode's unit is (the others leave the port to the fetch).
_CLIENTS = ("fetch", "move", "norm", "linear", "attend")
#: Memory words (read and written) that each client moved in the last run.
WORD_COUNTERS = tuple(f"{client}_words" for client in _CLIENTS)
CONTROLLER_COUNTERS = ("cycles", "fetch_cycles", "move_cycles", "norm_cycles", "linear_cycles",
                       "gate_cycles", "attend_cycles", "runs") + WORD_COUNTERS
_FORMAT_BITS = {"B": 8, "H": 16, "I": 32}
_CLIENT_OF = {"LOAD": "move", "STORE": "move", "NORM": "norm", "LINEAR": "linear",
              "ATTEND": "attend"}
COUNTER_OF_OPCODE = {"LOAD": "move_cycles", "STORE": "move_cycles", "NORM": "norm_cycles",
               "LINEAR": "linear_cycles", "GATE": "gate_cycles", "ATTEND": "attend_cycles"}
# The commands an instruction hands to its units, issued together in the "issue" state.
_COMMANDS = ("writer", "reader_a", "reader_b", "memory", "gains", "tlmm", "feeder",
             "attention")
_COMMANDS_OF = {
    "LOAD": ("writer", "memory"), "STORE": ("reader_a", "memory"),
    "NORM": ("reader_a", "gains"), "LINEAR": ("tlmm", "feeder", "writer"),
    "GATE": ("reader_a", "reader_b", "writer"), "ATTEND": ("attention", "reader_a", "writer"),
}


def instruction_layout() -> data.FlexibleLayout:
    """The 32-byte instruction of ``isa.FIELDS`` as a layout (little endian, byte offsets)."""
    return data.FlexibleLayout(8 * INSTRUCTION_BYTES, {
        name: data.Field(unsigned(_FORMAT_BITS[fmt]), 8 * offset) for name, offset, fmt in FIELDS})


class Controller(wiring.Component):
    """Fetch, decode and run instructions, one at a time, over the scratchpad and units.

    A RUN checks ``tokens`` and ``position`` (a bad value ends the run at once with its
    status and changes nothing), then executes instructions from ``program`` until END.
    Each instruction hands its commands to the units it needs (vector readers and
    writer on the scratchpad, the gain feeder, the codes buffer, the TLMM core, the
    attention block) and waits until its last result is stored. The memory port goes to
    the unit that needs it; ``busy`` says the controller owns it.

    Members
    -------
    run : ``In(stream.Signature(8))``; finished : ``Out(stream.Signature(8))`` (the status)
    position, tokens, program : ``In(32)`` (registers)
    status : ``Out(8)``; busy : ``Out(1)``
    cycles, ..., runs, fetch_words, ..., attend_words : ``Out(32)`` (:data:`CONTROLLER_COUNTERS`)
    memory : ``Out(MemoryPortSignature(config.memory))``
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        super().__init__({
            "run": In(stream.Signature(8)), "finished": Out(stream.Signature(8)),
            "position": In(32), "tokens": In(32), "program": In(32),
            "status": Out(8), "busy": Out(1),
            **{name: Out(32) for name in CONTROLLER_COUNTERS},
            "memory": Out(MemoryPortSignature(config.memory)),
        })

    def elaborate(self, platform):
        m = Module()
        self._instr = Signal(instruction_layout())
        self._op = Signal(8)                         # the executing instruction's opcode
        self._pending = Signal(len(_COMMANDS))       # its commands not yet taken
        self._starting = Signal()                    # an instruction is decoded
        self._client = Signal(range(len(_CLIENTS)))  # who has the memory port
        self._phase = Signal(2)                      # 1 fetching, 2 executing
        self._accumulate = (self._instr.flags & FLAG_ACCUMULATE) != 0
        u = self._units(m)
        self._route(m, u)
        self._issue(m, u)
        self._sequence(m, u)
        self._count(m)
        m.d.comb += u.ports.select.eq(self._client)
        return m

    # -- the units and their memories ----------------------------------------------------

    def _units(self, m):
        cfg = self._config
        lanes, tokens = cfg.lanes, cfg.max_tokens
        u = _Units()
        m.submodules.ports = u.ports = PortMux(cfg.memory, _CLIENTS)
        wiring.connect(m, u.ports.memory, wiring.flipped(self.memory))
        u.fetch = MemoryPortSignature(cfg.memory).create(path=("fetch_port",))
        u.move = MemoryPortSignature(cfg.memory).create(path=("move_port",))
        wiring.connect(m, u.fetch, u.ports.fetch)
        wiring.connect(m, u.move, u.ports.move)

        m.submodules.scratch = scratch = Memory(shape=unsigned(32 * lanes),
                                                depth=cfg.scratch_words, init=[])
        m.submodules.reader_a = u.reader_a = VectorReader(lanes, cfg.scratch_words, tokens)
        m.submodules.reader_b = u.reader_b = VectorReader(lanes, cfg.scratch_words, tokens)
        m.submodules.writer = u.writer = VectorWriter(lanes, cfg.scratch_words, tokens)
        for reader in (u.reader_a, u.reader_b):
            port = scratch.read_port()
            m.d.comb += [port.addr.eq(reader.read_addr), port.en.eq(reader.read_en),
                         reader.read_data.eq(port.data)]
        port = scratch.write_port()
        m.d.comb += [port.addr.eq(u.writer.write_addr), port.data.eq(u.writer.write_data),
                     port.en.eq(u.writer.write_en)]

        m.submodules.codes = codes = Memory(shape=unsigned(8 * lanes),
                                            depth=tokens * codes_row_beats(cfg), init=[])
        m.submodules.norm = u.norm = NormQuant(cfg.elementwise, gain=True)
        m.submodules.gains = u.gains = GainFeeder(cfg)
        m.submodules.codes_writer = u.codes_writer = CodesWriter(cfg)
        m.submodules.feeder = u.feeder = CodesFeeder(cfg)
        wiring.connect(m, u.gains.memory, u.ports.norm)
        wiring.connect(m, u.gains.gains, u.norm.gains)
        wiring.connect(m, u.norm.codes, u.codes_writer.codes)
        wiring.connect(m, u.norm.scale, u.codes_writer.scale)
        port = codes.write_port()
        m.d.comb += [port.addr.eq(u.codes_writer.write_addr),
                     port.data.eq(u.codes_writer.write_data),
                     port.en.eq(u.codes_writer.write_en)]
        port = codes.read_port()
        m.d.comb += [port.addr.eq(u.feeder.read_addr), port.en.eq(u.feeder.read_en),
                     u.feeder.read_data.eq(port.data)]

        m.submodules.tlmm = u.tlmm = TLMMCore(cfg.tlmm, cfg.memory)
        wiring.connect(m, u.feeder.acts, u.tlmm.acts)
        wiring.connect(m, u.tlmm.memory, u.ports.linear)
        m.submodules.dequant = u.dequant = Dequantize(lanes, cfg.tlmm.acc_width)
        m.submodules.residual = u.residual = ResidualAdd(lanes)
        m.submodules.gating = u.gating = Gating(lanes, cfg.model.activation)
        m.submodules.attention = u.attention = AttentionBlock(
            cfg.model, cfg.attention, cfg.memory, max_queries=tokens, kv_base=cfg.kv_base)
        wiring.connect(m, u.attention.memory, u.ports.attend)
        return u

    # -- datapath routing by opcode ------------------------------------------------------

    def _route(self, m, u):
        """Connect the streams the current instruction uses; the rest stay idle."""
        instr, op = self._instr, self._op
        lanes = self._config.lanes
        # TLMM results: R accumulators of one row block per beat; a token's vector ends
        # with its last row block. Each token's scale is its norm scale times out_scale.
        block = Signal(16)
        result = u.tlmm.results
        m.d.comb += [u.dequant.acc.valid.eq(result.valid), result.ready.eq(u.dequant.acc.ready),
                     u.dequant.acc.payload.last.eq(block == instr.blocks - 1)]
        m.d.comb += [u.dequant.acc.payload.acc[i].eq(result.payload.acc[i]) for i in range(lanes)]
        with m.If(result.valid & result.ready):
            m.d.sync += block.eq(Mux(block == instr.blocks - 1, 0, block + 1))
        scale_token = Signal(range(self._config.max_tokens + 1))
        out_scale = scale_layout(instr.scale[:26])
        m.d.comb += [u.codes_writer.token_scale.eq(scale_token),
                     u.dequant.scale.payload.eq(
                         scale_mul(m, u.codes_writer.selected_scale, out_scale, "out_scale")),
                     u.dequant.scale.valid.eq((op == OPCODES["LINEAR"]) &
                                              (scale_token != self.tokens))]
        with m.If(u.dequant.scale.valid & u.dequant.scale.ready):
            m.d.sync += scale_token.eq(scale_token + 1)
        with m.If(self._starting):
            m.d.sync += [scale_token.eq(0), block.eq(0)]

        m.d.comb += [u.norm.eps.payload.eq(instr.eps), u.norm.eps.valid.eq(op == OPCODES["NORM"]),
                     u.attention.score_scale.eq(instr.scale[:26])]
        head_beats = self._config.attention.beats_per_key
        head_beat = Signal(range(head_beats))
        with m.Switch(op):
            with m.Case(OPCODES["LOAD"]):
                data_in = u.move.read_data
                m.d.comb += [u.writer.beats.valid.eq(data_in.valid),
                             u.writer.beats.payload.values.eq(data_in.payload.data),
                             data_in.ready.eq(u.writer.beats.ready)]
            with m.Case(OPCODES["STORE"]):
                out = u.move.write_data
                m.d.comb += [out.valid.eq(u.reader_a.beats.valid),
                             out.payload.eq(u.reader_a.beats.payload.values),
                             u.reader_a.beats.ready.eq(out.ready)]
            with m.Case(OPCODES["NORM"]):
                wiring.connect(m, u.reader_a.beats, u.norm.values)
            with m.Case(OPCODES["LINEAR"]):
                with m.If(self._accumulate):
                    wiring.connect(m, u.reader_a.beats, u.residual.residual)
                    wiring.connect(m, u.dequant.out, u.residual.update)
                    wiring.connect(m, u.residual.out, u.writer.beats)
                with m.Else():
                    wiring.connect(m, u.dequant.out, u.writer.beats)
            with m.Case(OPCODES["GATE"]):
                wiring.connect(m, u.reader_a.beats, u.gating.gate)
                wiring.connect(m, u.reader_b.beats, u.gating.up)
                wiring.connect(m, u.gating.out, u.writer.beats)
            with m.Case(OPCODES["ATTEND"]):
                # The block takes the QKV row head by head: ``last`` ends each head.
                qkv, row = u.attention.qkv, u.reader_a.beats
                m.d.comb += [qkv.valid.eq(row.valid), row.ready.eq(qkv.ready),
                             qkv.payload.values.eq(row.payload.values),
                             qkv.payload.last.eq(head_beat == head_beats - 1)]
                with m.If(qkv.valid & qkv.ready):
                    m.d.sync += head_beat.eq(Mux(head_beat == head_beats - 1, 0, head_beat + 1))
                wiring.connect(m, u.attention.out, u.writer.beats)

    # -- handing out the instruction's commands ------------------------------------------

    def _issue(self, m, u):
        """Each pending command is offered until its unit takes it."""
        cfg, instr, op = self._config, self._instr, self._op
        tokens = self.tokens
        streams = {"writer": u.writer.command, "reader_a": u.reader_a.command,
                   "reader_b": u.reader_b.command, "gains": u.gains.command,
                   "tlmm": u.tlmm.job, "feeder": u.feeder.command,
                   "attention": u.attention.job}
        is_op = {name: op == code for name, code in OPCODES.items()}
        # Payloads (fields a command does not use for this opcode are don't-cares).
        w, a, b = (u.writer.command.payload, u.reader_a.command.payload,
                   u.reader_b.command.payload)
        m.d.comb += [
            w.base.eq(instr.dst), w.stride.eq(instr.dst_stride), w.tokens.eq(tokens),
            w.beats.eq(Mux(is_op["LINEAR"], instr.blocks,
                           Mux(is_op["ATTEND"], cfg.model.q_dim // cfg.lanes, instr.beats))),
            a.base.eq(Mux(is_op["LINEAR"], instr.dst, instr.src)),
            a.stride.eq(Mux(is_op["LINEAR"], instr.dst_stride, instr.src_stride)),
            a.beats.eq(Mux(is_op["LINEAR"], instr.blocks, instr.beats)), a.tokens.eq(tokens),
            b.base.eq(instr.aux), b.stride.eq(instr.src_stride), b.beats.eq(instr.beats),
            b.tokens.eq(tokens),
            u.gains.command.payload.address.eq(instr.address),
            u.gains.command.payload.beats.eq(instr.beats),
            u.gains.command.payload.tokens.eq(tokens),
            u.tlmm.job.payload.base.eq(instr.address), u.tlmm.job.payload.chunks.eq(instr.beats),
            u.tlmm.job.payload.row_blocks.eq(instr.blocks), u.tlmm.job.payload.tokens.eq(tokens),
            u.feeder.command.payload.chunks.eq(instr.beats),
            u.feeder.command.payload.tokens.eq(tokens),
            u.attention.job.payload.layer.eq(instr.layer),
            u.attention.job.payload.start.eq(self.position),
            u.attention.job.payload.tokens.eq(tokens),
        ]
        for index, name in enumerate(_COMMANDS):
            bit = self._pending[index]
            if name == "memory":
                words = instr.beats * tokens
                for command in (u.move.read_cmd, u.move.write_cmd):
                    m.d.comb += [command.payload.addr.eq(instr.address),
                                 command.payload.words.eq(words)]
                m.d.comb += [u.move.read_cmd.valid.eq(bit & is_op["LOAD"]),
                             u.move.write_cmd.valid.eq(bit & is_op["STORE"])]
                taken = (u.move.read_cmd.valid & u.move.read_cmd.ready |
                         u.move.write_cmd.valid & u.move.write_cmd.ready)
            else:
                command = streams[name]
                m.d.comb += command.valid.eq(bit)
                taken = command.valid & command.ready
            with m.If(taken):
                m.d.sync += bit.eq(0)

    def _commands_for(self, opcode_name):
        """The pending-command bits an opcode starts with."""
        names = _COMMANDS_OF.get(opcode_name, ())
        return sum(1 << _COMMANDS.index(name) for name in names)

    # -- the sequence: fetch, decode, issue, wait ----------------------------------------

    def _sequence(self, m, u):
        cfg, instr, op = self._config, self._instr, self._op
        words_per_instruction = -(-8 * INSTRUCTION_BYTES // cfg.data_width)
        pc = Signal(32)
        part = Signal(range(words_per_instruction + 1))
        fetch = u.fetch
        m.d.comb += [fetch.read_cmd.payload.addr.eq(pc),
                     fetch.read_cmd.payload.words.eq(words_per_instruction)]
        # The executing instruction's unit has the port; between instructions, the fetch.
        for name, client in _CLIENT_OF.items():
            with m.If((self._phase == 2) & (op == OPCODES[name])):
                m.d.comb += self._client.eq(_CLIENTS.index(client))
        capacity = cfg.attention.capacity
        with m.FSM():
            with m.State("idle"):
                m.d.comb += self.run.ready.eq(1)
                with m.If(self.run.valid):
                    m.d.sync += [pc.eq(self.program), op.eq(OPCODES["END"])]
                    with m.If((self.tokens == 0) | (self.tokens > cfg.max_tokens)):
                        m.d.sync += self.status.eq(STATUS["BAD_TOKENS"])
                        m.next = "finish"
                    with m.Elif(self.position + self.tokens > capacity):
                        m.d.sync += self.status.eq(STATUS["BAD_POSITION"])
                        m.next = "finish"
                    with m.Else():
                        m.d.sync += self.status.eq(STATUS["OK"])
                        m.next = "fetch"
            with m.State("fetch"):
                m.d.comb += [self.busy.eq(1), fetch.read_cmd.valid.eq(1), self._phase.eq(1)]
                with m.If(fetch.read_cmd.ready):
                    m.d.sync += part.eq(0)
                    m.next = "fetch_data"
            with m.State("fetch_data"):
                m.d.comb += [self.busy.eq(1), fetch.read_data.ready.eq(1), self._phase.eq(1)]
                with m.If(fetch.read_data.valid):
                    if words_per_instruction > 1:
                        m.d.sync += instr.eq(Cat(instr.as_value()[cfg.data_width:],
                                                 fetch.read_data.payload.data))
                    else:
                        m.d.sync += instr.eq(fetch.read_data.payload.data)
                    with m.If(fetch.read_data.payload.last):
                        m.next = "decode"
            with m.State("decode"):
                m.d.comb += [self.busy.eq(1), self._phase.eq(1)]
                m.d.sync += [op.eq(instr.opcode), pc.eq(pc + words_per_instruction)]
                with m.Switch(instr.opcode):
                    with m.Case(OPCODES["END"]):
                        m.next = "finish"
                    for name in _COMMANDS_OF:
                        with m.Case(OPCODES[name]):
                            bits = self._commands_for(name)
                            if name == "LINEAR":
                                bits = Mux(self._accumulate,
                                           bits | 1 << _COMMANDS.index("reader_a"), bits)
                            m.d.sync += self._pending.eq(bits)
                            m.d.comb += self._starting.eq(1)
                            m.next = "issue"
                    with m.Default():
                        m.d.sync += [self.status.eq(STATUS["BAD_OPCODE"]),
                                     op.eq(OPCODES["END"])]
                        m.next = "finish"
            with m.State("issue"):
                m.d.comb += [self.busy.eq(1), self._phase.eq(2)]
                with m.If(self._pending == 0):
                    m.next = "wait"
            with m.State("wait"):
                m.d.comb += [self.busy.eq(1), self._phase.eq(2)]
                with m.If(self._done(m, u)):
                    m.next = "fetch"
            with m.State("finish"):
                m.d.comb += [self.finished.valid.eq(1), self.finished.payload.eq(self.status)]
                with m.If(self.finished.ready):
                    m.d.sync += op.eq(OPCODES["END"])
                    m.next = "idle"
        m.d.comb += u.codes_writer.restart.eq(self._starting & (instr.opcode == OPCODES["NORM"]))

    def _done(self, m, u):
        """Whether the current instruction's last result is stored."""
        op = self._op
        done = Signal()
        m.d.comb += u.move.write_done.ready.eq(op == OPCODES["STORE"])
        with m.Switch(op):
            with m.Case(OPCODES["STORE"]):
                m.d.comb += done.eq(u.move.write_done.valid)
            with m.Case(OPCODES["NORM"]):
                m.d.comb += done.eq(u.codes_writer.done == self.tokens)
            with m.Default():
                m.d.comb += done.eq(u.writer.idle)
        return done

    # -- counters -------------------------------------------------------------------------

    def _count(self, m):
        op = self._op
        with m.If(self.run.valid & self.run.ready):
            m.d.sync += [getattr(self, name).eq(0) for name in CONTROLLER_COUNTERS
                         if name != "runs"]
            m.d.sync += self.runs.eq(self.runs + 1)
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(self._phase == 1):
            m.d.sync += self.fetch_cycles.eq(self.fetch_cycles + 1)
        with m.If(self._phase == 2):
            for name, counter in COUNTER_OF_OPCODE.items():
                with m.If(op == OPCODES[name]):
                    m.d.sync += getattr(self, counter).eq(getattr(self, counter) + 1)
        # The port goes to one client at a time, so each word moved is that client's.
        port = self.memory
        moved = (port.read_data.valid & port.read_data.ready |
                 port.write_data.valid & port.write_data.ready)
        with m.If(moved):
            with m.Switch(self._client):
                for index, name in enumerate(WORD_COUNTERS):
                    with m.Case(index):
                        m.d.sync += getattr(self, name).eq(getattr(self, name) + 1)


class _Units:
    """The controller's submodules, by name (a plain namespace)."""
