"""The KV cache in memory: its layout, a record writer and a key-beat reader.

The cache lives behind the memory port, so the same gateware keeps it in on-chip
memory (small contexts) or external DDR (large ones). Each (layer, kv head, token)
has one record (``kv_record_layout``: K and V codes and their scales) in whole bus
words; the records of one (layer, kv head) are consecutive, so a pass over keys
``0 .. n-1`` is a single linear read, and start on a whole word of the port that reads
them (``align`` bus words wide), whose words a record may straddle.
"""

import math
from dataclasses import dataclass

from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig, AttentionConfig, kv_record_words, kv_region_words
from ..layouts import (key_beat_layout, kv_head_shape, kv_record_layout, layer_shape,
                       position_shape)
from ..memory.port import MemoryConfig, MemoryPortSignature, read_data_layout
from ..weights import BurstReader

__all__ = ["KVLayout", "kv_layout", "KVWriter", "KVReader", "kv_write_layout", "kv_pass_layout"]


@dataclass(frozen=True)
class KVLayout:
    """Where each record sits: word address of (layer, kv head, token) from ``base``.

    The records of a (layer, kv head) follow each other in whole bus words
    (:attr:`words_per_record`) in a region of a multiple of ``align`` words, so a port
    ``align`` bus words wide (:attr:`port_memory`) starts each pass on a word of its own;
    a record then starts at one of :meth:`record_offsets` bus words into that port's
    word and may end in the next."""
    config: AttentionConfig
    memory: MemoryConfig
    base: int = 0
    align: int = 1

    @property
    def record_bits(self) -> int:
        return kv_record_layout(self.config).size

    @property
    def words_per_record(self) -> int:
        return kv_record_words(self.config.head_dim, self.memory.data_width)

    @property
    def region_words(self) -> int:
        """Bus words of one (layer, kv head)'s records, a multiple of ``align``."""
        cfg = self.config
        return kv_region_words(cfg.head_dim, cfg.capacity, self.memory.data_width, self.align)

    @property
    def port_memory(self) -> MemoryConfig:
        """The memory as the port that reads the records sees it: words ``align`` wide."""
        return self.memory.widened(self.align)

    def port_words(self, count):
        """Words of :attr:`port_memory` a pass over ``count`` records reads: whole words
        from its region's start (Python ints or Amaranth values alike)."""
        shift = (self.align - 1).bit_length()
        return (count * self.words_per_record + self.align - 1) >> shift

    def record_offsets(self) -> tuple:
        """The bus-word offsets into a port word at which records start, in pass order
        of a pass's records ``0, 1, ...`` (the offsets repeat with this period)."""
        words, align = self.words_per_record, self.align
        return tuple(k * words % align for k in range(align // math.gcd(words, align)))

    @property
    def words(self) -> int:
        cfg = self.config
        return cfg.layers * cfg.kv_heads * self.region_words

    def address(self, layer, kv_head, token=0):
        """Word address of a record (Python ints or Amaranth values alike)."""
        cfg = self.config
        return (self.base + (layer * cfg.kv_heads + kv_head) * self.region_words
                + token * self.words_per_record)

    def check(self):
        if self.base % self.align:
            raise ValueError(f"the KV cache's base ({self.base}) must be a multiple of its "
                             f"records' alignment ({self.align} words)")
        if self.base + self.words > 2 ** self.memory.addr_width:
            raise ValueError(f"the KV cache needs {self.words} words from {self.base}, beyond "
                             f"the {self.memory.addr_width}-bit word address space")


def kv_layout(config: AcceleratorConfig) -> KVLayout:
    """The design's KV cache: at ``kv_base``, read through a port of ``kv_port_words``
    bus words."""
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

    Each pass reads its records in one linear burst sequence of the layout's port words
    (:attr:`KVLayout.port_memory`), reassembles each record from them and cuts it into
    ``head_dim / dims_per_cycle`` key beats, with the key's position in ``index`` and
    ``last`` on the pass's final beat. A record may begin and end inside a port word
    (:meth:`KVLayout.record_offsets`): a word the next record shares stays for it, and
    the last word's tail after a pass's final record is dropped. The next pass's reads are
    issued while the current one still streams, so passes follow each other without
    the memory latency in between.

    Members
    -------
    passes : ``In(stream.Signature(kv_pass_layout(config)))``
    read_cmd, read_data : the read channels (client side) of a port of ``port_memory``
    keys : ``Out(stream.Signature(key_beat_layout(config)))``
    """

    def __init__(self, layout: KVLayout, burst: int = 256):
        layout.check()
        self._layout = layout
        self._burst = burst
        port = MemoryPortSignature(layout.port_memory).members
        super().__init__({
            "passes": In(stream.Signature(kv_pass_layout(layout.config))),
            "read_cmd": Out(port["read_cmd"].signature),
            "read_data": In(stream.Signature(read_data_layout(layout.port_memory))),
            "keys": Out(stream.Signature(key_beat_layout(layout.config))),
        })

    def elaborate(self, platform):
        m = Module()
        layout, cfg = self._layout, self._layout.config
        total_bits = layout.port_words(cfg.capacity).bit_length()
        m.submodules.bursts = bursts = BurstReader(layout.port_memory, self._burst, total_bits)
        # The pass's record count for the serializer and, where records share port words,
        # for the assembler.
        sharing = len(layout.record_offsets()) > 1
        counts = [SyncFIFOBuffered(width=cfg.capacity.bit_length(), depth=2)
                  for _ in range(2 if sharing else 1)]
        for index, fifo in enumerate(counts):
            m.submodules[("counts", "record_counts")[index]] = fifo
        request = self.passes.payload
        room = Cat(*(fifo.w_rdy for fifo in counts)).all()
        shift = (layout.align - 1).bit_length()
        m.d.comb += [
            self.passes.ready.eq(bursts.request.ready & room),
            bursts.request.valid.eq(self.passes.valid & room),
            bursts.request.payload.base.eq(layout.address(request.layer, request.kv_head)
                                           >> shift),
            bursts.request.payload.words.eq(layout.port_words(request.count)),
        ]
        for fifo in counts:
            m.d.comb += [fifo.w_en.eq(self.passes.valid & self.passes.ready),
                         fifo.w_data.eq(request.count)]
        wiring.connect(m, bursts.commands, wiring.flipped(self.read_cmd))
        record, record_valid, record_taken = self._assemble(m, counts[1] if sharing else None)
        self._serialize(m, counts[0], record, record_valid, record_taken)
        return m

    def _assemble(self, m, counts):
        """Collect port words into records; a finished record waits in ``record``.

        The words shift in at the top of ``collecting``, so a record that needs ``n``
        words from an offset ``o`` into the first of them is complete once those ``n``
        words are the top ones. When a record leaves, a last word it shares with the next
        record stays (``filled`` restarts at 1) unless the record ends its pass: ``counts``
        (the passes' record counts) is given only where records share words, else None."""
        layout = self._layout
        unit, align = layout.memory.data_width, layout.align
        words, bits = layout.words_per_record, kv_record_layout(layout.config).size
        width = unit * align
        offsets = layout.record_offsets()
        needs = [-(-(offset + words) // align) for offset in offsets]
        span = max(needs)
        collecting = Signal(span * width)
        filled = Signal(range(span + 1))
        record = Signal(kv_record_layout(self._layout.config))
        record_valid, record_taken = Signal(), Signal()
        phase = Signal(range(len(offsets)))             # the offset of this record: its index
        need, shared = Signal(range(span + 1)), Signal()
        next_need = Signal(range(span + 1))             # the next record's, in the same pass
        arranged = Signal(bits)                         # this record's bits, once complete
        with m.Switch(phase):
            for index, (offset, count) in enumerate(zip(offsets, needs)):
                with m.Case(index):
                    start = ((span - count) * align + offset) * unit
                    m.d.comb += [need.eq(count), shared.eq((offset + words) % align != 0),
                                 next_need.eq(needs[(index + 1) % len(needs)]),
                                 arranged.eq(collecting[start:start + bits])]
        complete = filled == need
        move = Signal()                                 # the record leaves this cycle
        m.d.comb += move.eq(complete & (~record_valid | record_taken))
        kept = shared
        if counts is not None:
            # The records of the pass moved so far: the last one's shared word is the
            # pass's tail, and the next pass starts at offset 0 of a word of its own.
            moved = Signal(range(layout.config.capacity))
            ends_pass = moved == counts.r_data - 1
            kept = shared & ~ends_pass
            m.d.comb += counts.r_en.eq(move & ends_pass)
            with m.If(move):
                m.d.sync += [moved.eq(Mux(ends_pass, 0, moved + 1)),
                             phase.eq(Mux(ends_pass | (phase == len(offsets) - 1), 0,
                                          phase + 1))]
        # A word arriving as the record leaves joins the next one (no bubble between
        # records), unless the word the next one keeps is all it needs: the words a
        # record needs are always the top ones.
        m.d.comb += self.read_data.ready.eq(~complete | (move & (kept < next_need)))
        with m.If(record_taken):
            m.d.sync += record_valid.eq(0)
        with m.If(move):
            m.d.sync += [record.eq(arranged), record_valid.eq(1), filled.eq(kept)]
        with m.If(self.read_data.valid & self.read_data.ready):
            shifted = Cat(collecting[width:], self.read_data.payload.data)
            m.d.sync += [collecting.eq(shifted), filled.eq(Mux(move, kept + 1, filled + 1))]
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
