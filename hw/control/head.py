"""HEAD: the last token's codes against the LM head on the head unit, its top-k into the
scratchpad (docs/program.md, docs/head.md)."""

from amaranth import Module, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out, connect, flipped

from ..config import AcceleratorConfig
from ..head.gemv import HeadGEMV
from ..layouts import code_beat_layout, vector_beat_layout
from ..memory.port import MemoryPortSignature
from .feeders import codes_read_members, codes_row_beats
from .isa import TOP_ENTRY_LANES

__all__ = ["head_unit_job_layout", "CodesRowReader", "HeadUnit"]


def head_unit_job_layout(config: AcceleratorConfig) -> data.StructLayout:
    """The head's word address and the token whose codes it scores."""
    return data.StructLayout({"base": unsigned(config.weight_memory.addr_width),
                              "token": unsigned(config.max_tokens.bit_length())})


class CodesRowReader(wiring.Component):
    """Stream one token's ``hidden / lanes`` beats of codes out of the codes buffer.

    Token ``t``'s codes start at beat ``t * codes_row_beats`` (:class:`.feeders.CodesWriter`
    puts them there). The buffer answers a read a cycle later, so a read is issued only
    when the two-beat queue will have room for it: back-pressure on ``codes`` never
    loses a beat, and with ``codes`` always ready a beat goes out every cycle.

    Members
    -------
    command : ``In(stream.Signature(range(max_tokens)))`` the token.
    read_addr, read_en : ``Out``; read_data : ``In(8 * lanes)``
    codes : ``Out(stream.Signature(code_beat_layout(lanes)))``, ``last`` on the final beat.
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        super().__init__({
            "command": In(stream.Signature(range(config.max_tokens))),
            **codes_read_members(config),
            "codes": Out(stream.Signature(code_beat_layout(config.lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        beats = cfg.model.hidden // cfg.lanes
        # An unbuffered queue: its level counts exactly the entries it can no longer take
        # (a buffered one may refuse a write while its level says there is room).
        m.submodules.queue = queue = SyncFIFO(width=8 * cfg.lanes + 1, depth=2)
        address = Signal.like(self.read_addr)
        left = Signal(range(beats + 1))             # reads still to issue
        arriving, arriving_last = Signal(), Signal()
        entry = Signal(code_beat_layout(cfg.lanes))
        issue = (left != 0) & (queue.level + arriving < queue.depth)
        m.d.comb += [
            self.command.ready.eq((left == 0) & ~arriving & ~queue.r_rdy),
            self.read_addr.eq(address), self.read_en.eq(issue),
            entry.codes.eq(self.read_data), entry.last.eq(arriving_last),
            queue.w_en.eq(arriving), queue.w_data.eq(entry),
            self.codes.valid.eq(queue.r_rdy), queue.r_en.eq(self.codes.ready),
            self.codes.payload.eq(queue.r_data),
        ]
        m.d.sync += [arriving.eq(issue), arriving_last.eq(issue & (left == 1))]
        with m.If(issue):
            m.d.sync += [address.eq(address + 1), left.eq(left - 1)]
        with m.If(self.command.valid & self.command.ready):
            m.d.sync += [address.eq(self.command.payload * codes_row_beats(cfg)),
                         left.eq(beats)]
        return m


class HeadUnit(wiring.Component):
    """The HEAD instruction's unit: feed token ``token``'s codes from the codes buffer to
    a :class:`~tritium.hw.head.gemv.HeadGEMV` of the design's ``head_k`` over every
    vocabulary row of the head at ``base``, and send its top-k entries as beats for the
    scratchpad writer, best first: lane 0 the row, lanes 1 and 2 the 48-bit score's low
    32 bits and its high bits sign-extended (:data:`.isa.TOP_ENTRY_LANES`), the other
    lanes zero.

    Members
    -------
    job : ``In(stream.Signature(head_unit_job_layout(config)))``
    read_addr, read_en : ``Out``; read_data : ``In(8 * lanes)`` (the codes buffer)
    memory : ``Out(MemoryPortSignature(config.weight_memory))`` (reads only)
    beats : ``Out(stream.Signature(vector_beat_layout(lanes)))`` (``last`` unused: 0)
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        super().__init__({
            "job": In(stream.Signature(head_unit_job_layout(config))),
            **codes_read_members(config),
            "memory": Out(MemoryPortSignature(config.weight_memory)),
            "beats": Out(stream.Signature(vector_beat_layout(config.lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        assert cfg.lanes >= TOP_ENTRY_LANES
        m.submodules.gemv = gemv = HeadGEMV(cfg, k=cfg.head_k)
        m.submodules.reader = reader = CodesRowReader(cfg)
        connect(m, gemv.memory, flipped(self.memory))
        connect(m, reader.codes, gemv.codes)
        # Both take the job in the same cycle: each is ready while idle, whatever valid.
        both = gemv.job.ready & reader.command.ready
        m.d.comb += [
            self.job.ready.eq(both),
            gemv.job.valid.eq(self.job.valid & both),
            gemv.job.payload.base.eq(self.job.payload.base),
            gemv.job.payload.rows.eq(cfg.model.vocab_size),
            reader.command.valid.eq(self.job.valid & both),
            reader.command.payload.eq(self.job.payload.token),
            self.read_addr.eq(reader.read_addr), self.read_en.eq(reader.read_en),
            reader.read_data.eq(self.read_data),
        ]
        entry, values = gemv.result.payload, self.beats.payload.values
        m.d.comb += [
            self.beats.valid.eq(gemv.result.valid), gemv.result.ready.eq(self.beats.ready),
            values[0].eq(entry.index), values[1].eq(entry.score[:32]),
            values[2].eq(entry.score[32:].as_signed()),
        ]
        return m
