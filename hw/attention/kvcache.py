"""The KV cache in memory: its layout, a record writer and a key-beat reader.

The cache lives behind the memory port, so the same gateware keeps it in on-chip
memory (small contexts) or external DDR (large ones). Each (layer, kv head, token)
has one record (``kv_record_layout``: K and V codes and their scales) padded to whole
bus words, or to whole words of a wider port that reads them (``align``); the records
of one (layer, kv head) are consecutive, so a pass over keys ``0 .. n-1`` is a single
linear read.
"""

from dataclasses import dataclass

from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig, AttentionConfig, kv_record_words
from ..layouts import (key_beat_layout, kv_head_shape, kv_record_layout, layer_shape,
                       position_shape)
from ..memory.port import MemoryConfig, MemoryPortSignature, read_data_layout
from ..weights import BurstReader

__all__ = ["KVLayout", "kv_layout", "KVWriter", "KVReader", "kv_write_layout", "kv_pass_layout"]


@dataclass(frozen=True)
class KVLayout:
    """Where each record sits: word address of (layer, kv head, token) from ``base``.

    Each record takes a multiple of ``align`` words, so a port ``align`` words wide
    reads whole records (:meth:`widened`)."""
    config: AttentionConfig
    memory: MemoryConfig
    base: int = 0
    align: int = 1

    @property
    def record_bits(self) -> int:
        return kv_record_layout(self.config).size

    @property
    def words_per_record(self) -> int:
        return kv_record_words(self.config.head_dim, self.memory.data_width, self.align)

    def widened(self) -> "KVLayout":
        """The same records as a port ``align`` words wide sees them: its words, its
        addresses (``base / align``), a record in whole words of it."""
        return KVLayout(self.config, self.memory.widened(self.align), self.base // self.align)

    @property
    def words(self) -> int:
        cfg = self.config
        return cfg.layers * cfg.kv_heads * cfg.capacity * self.words_per_record

    def address(self, layer, kv_head, token=0):
        """Word address of a record (Python ints or Amaranth values alike)."""
        cfg = self.config
        return self.base + ((layer * cfg.kv_heads + kv_head) * cfg.capacity + token) \
            * self.words_per_record

    def check(self):
        if self.base % self.align:
            raise ValueError(f"the KV cache's base ({self.base}) must be a multiple of its "
                             f"records' alignment ({self.align} words)")
        if self.base + self.words > 2 ** self.memory.addr_width:
            raise ValueError(f"the KV cache needs {self.words} words from {self.base}, beyond "
                             f"the {self.memory.addr_width}-bit word address space")


def kv_layout(config: AcceleratorConfig) -> KVLayout:
    """The design's KV cache: at ``kv_base``, each record padded to whole words of the
    port that reads it (``kv_port_words``)."""
    return KVLayout(config.attention, config.memory, config.kv_base, config.kv_port_words)


def kv_write_layout(config: AttentionConfig) -> data.StructLayout:
    """One record to store at (layer, kv head, position)."""
    return data.StructLayout({"record": kv_record_layout(config), "layer": layer_shape(config),
                              "kv_head": kv_head_shape(config),
                              "position": position_shape(config)})


def kv_pass_layout(config: AttentionConfig) -> data.StructLayout:
    """One pass over keys ``0 .. count-1`` of (layer, kv head); ``count`` >= 1."""
    return data.StructLayout({"layer": layer_shape(config), "kv_head": kv_head_shape(config),
                              "count": unsigned(config.capacity.bit_length())})


class KVWriter(wiring.Component):
    """Store records through the memory port's write channels.

    One write command of ``words_per_record`` words per record, then its words; the
    next record is taken once the last word is out. ``pending`` counts writes the
    memory has not yet acknowledged, so a reader can wait for the cache to be current.

    Members
    -------
    records : ``In(stream.Signature(kv_write_layout(config)))``
    write_cmd, write_data, write_done : the memory port's write channels (client side)
    pending : ``Out(range)``
    """

    def __init__(self, layout: KVLayout, max_pending: int = 255):
        layout.check()
        self._layout = layout
        port = MemoryPortSignature(layout.memory).members
        super().__init__({
            "records": In(stream.Signature(kv_write_layout(layout.config))),
            "write_cmd": Out(port["write_cmd"].signature),
            "write_data": Out(port["write_data"].signature),
            "write_done": In(stream.Signature(unsigned(1))),
            "pending": Out(range(max_pending + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        layout, width = self._layout, self._layout.memory.data_width
        words = layout.words_per_record
        request = self.records.payload
        record = Signal(words * width)
        word = Signal(range(words + 1))                # words still to send
        command_sent = Signal()
        idle = (word == 0) & ~self.write_cmd.valid
        issued = self.write_cmd.valid & self.write_cmd.ready
        acknowledged = self.write_done.valid
        m.d.comb += [
            self.records.ready.eq(idle & (self.pending != 2 ** len(self.pending) - 1)),
            self.write_done.ready.eq(1),
            self.write_data.valid.eq((word != 0) & command_sent),
            self.write_data.payload.eq(record[:width]),
        ]
        with m.If(self.records.valid & self.records.ready):
            m.d.sync += [
                record.eq(request.record.as_value()), word.eq(words), command_sent.eq(0),
                self.write_cmd.valid.eq(1),
                self.write_cmd.payload.addr.eq(layout.address(request.layer, request.kv_head,
                                                              request.position)),
                self.write_cmd.payload.words.eq(words),
            ]
        with m.If(issued):
            m.d.sync += [self.write_cmd.valid.eq(0), command_sent.eq(1)]
        with m.If(self.write_data.valid & self.write_data.ready):
            m.d.sync += [record.eq(record >> width), word.eq(word - 1)]
        m.d.sync += self.pending.eq(self.pending + issued - acknowledged)
        return m


class KVReader(wiring.Component):
    """Passes over the cache as key beats for the attention core.

    Each pass reads its records in one linear burst sequence, reassembles each record
    from its words and cuts it into ``head_dim / dims_per_cycle`` key beats, with the
    key's position in ``index`` and ``last`` on the pass's final beat. The next pass's
    reads are issued while the current one still streams, so passes follow each other
    without the memory latency in between.

    Members
    -------
    passes : ``In(stream.Signature(kv_pass_layout(config)))``
    read_cmd, read_data : the memory port's read channels (client side)
    keys : ``Out(stream.Signature(key_beat_layout(config)))``
    """

    def __init__(self, layout: KVLayout, burst: int = 256):
        layout.check()
        self._layout = layout
        self._burst = burst
        port = MemoryPortSignature(layout.memory).members
        super().__init__({
            "passes": In(stream.Signature(kv_pass_layout(layout.config))),
            "read_cmd": Out(port["read_cmd"].signature),
            "read_data": In(stream.Signature(read_data_layout(layout.memory))),
            "keys": Out(stream.Signature(key_beat_layout(layout.config))),
        })

    def elaborate(self, platform):
        m = Module()
        layout, cfg = self._layout, self._layout.config
        words = layout.words_per_record
        total_bits = (cfg.capacity * words).bit_length()
        m.submodules.bursts = bursts = BurstReader(layout.memory, self._burst, total_bits)
        m.submodules.counts = counts = SyncFIFOBuffered(width=cfg.capacity.bit_length(),
                                                        depth=2)
        request = self.passes.payload
        m.d.comb += [
            self.passes.ready.eq(bursts.request.ready & counts.w_rdy),
            bursts.request.valid.eq(self.passes.valid & counts.w_rdy),
            bursts.request.payload.base.eq(layout.address(request.layer, request.kv_head)),
            bursts.request.payload.words.eq(request.count * words),
            counts.w_en.eq(self.passes.valid & self.passes.ready),
            counts.w_data.eq(request.count),
        ]
        wiring.connect(m, bursts.commands, wiring.flipped(self.read_cmd))
        record, record_valid, record_taken = self._assemble(m, words)
        self._serialize(m, counts, record, record_valid, record_taken)
        return m

    def _assemble(self, m, words):
        """Collect bus words into records; a finished record waits in ``record``."""
        width = self._layout.memory.data_width
        collecting = Signal(words * width)
        filled = Signal(range(words + 1))
        record = Signal(kv_record_layout(self._layout.config))
        record_valid, record_taken = Signal(), Signal()
        complete = filled == words
        move = complete & (~record_valid | record_taken)    # the record leaves this cycle
        # A word arriving as the record leaves starts the next one: no bubble between
        # records (the words shift through, so the next record is aligned after
        # ``words`` more of them whatever the register holds before).
        m.d.comb += self.read_data.ready.eq(~complete | move)
        with m.If(record_taken):
            m.d.sync += record_valid.eq(0)
        with m.If(move):
            m.d.sync += [record.eq(collecting[:record.shape().size]), record_valid.eq(1),
                         filled.eq(0)]
        with m.If(self.read_data.valid & self.read_data.ready):
            shifted = Cat(collecting[width:], self.read_data.payload.data)
            m.d.sync += [collecting.eq(shifted), filled.eq(Mux(move, 1, filled + 1))]
        return record, record_valid, record_taken

    def _serialize(self, m, counts, record, record_valid, record_taken):
        """Cut each record into key beats; number the keys of a pass."""
        cfg = self._layout.config
        beats = cfg.beats_per_key
        beat = Signal(range(beats))
        index = Signal(position_shape(cfg))
        out = self.keys.payload
        final_beat = beat == beats - 1
        final_key = index == counts.r_data - 1
        step = cfg.dims_per_cycle
        m.d.comb += [
            self.keys.valid.eq(record_valid & counts.r_rdy),
            out.k.eq(record.k.as_value().word_select(beat, 8 * step)),
            out.v.eq(record.v.as_value().word_select(beat, 8 * step)),
            out.k_scale.eq(record.k_scale), out.v_scale.eq(record.v_scale),
            out.index.eq(index), out.last.eq(final_beat & final_key),
        ]
        with m.If(self.keys.valid & self.keys.ready):
            m.d.sync += beat.eq(Mux(final_beat, 0, beat + 1))
            with m.If(final_beat):
                m.d.comb += record_taken.eq(1)
                m.d.sync += index.eq(Mux(final_key, 0, index + 1))
                with m.If(final_key):
                    m.d.comb += counts.r_en.eq(1)
