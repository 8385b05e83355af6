"""AXI4 master behind the memory port: port commands become INCR bursts (Zynq HP, Alveo DDR)."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, connect, flipped
from amaranth.utils import exact_log2

from ..stream import register_stage
from .port import (MemoryConfig, MemoryPortSignature, aligned_piece, command_layout,
                   read_data_layout)

__all__ = ["AXI4Signature", "AXI4Master", "BurstSplitter", "burst_layout",
           "AXI_BURST_INCR", "AXI_RESP_OKAY", "AXI_RESP_SLVERR", "AXI_CACHE_NORMAL_BUFFERABLE",
           "AXI_CACHE_NORMAL_NON_BUFFERABLE", "AXI_CACHE"]

AXI_BURST_INCR = 0b01
AXI_RESP_OKAY = 0b00
AXI_RESP_SLVERR = 0b10
#: ARCACHE/AWCACHE "Normal Non-cacheable Bufferable", what Xilinx DMA masters drive.
AXI_CACHE_NORMAL_BUFFERABLE = 0b0011
#: AWCACHE "Normal Non-cacheable Non-bufferable": the write response comes from the final
#: destination (AXI4 spec, A4.4), not from a buffer on the way.
AXI_CACHE_NORMAL_NON_BUFFERABLE = 0b0010
#: The cache attribute of each address channel. Reads are bufferable. Writes are not: a
#: client reads what it wrote after its ``write_done`` (the memory port's contract), and
#: the board top may read it through another HP port (the KV records through the weight
#: port, the units' port striped over two), so the write response must mean the data is
#: in DDR, not in a buffer on one port's path.
AXI_CACHE = {"ar": AXI_CACHE_NORMAL_BUFFERABLE, "aw": AXI_CACHE_NORMAL_NON_BUFFERABLE}
# Bursts never cross a 4 KiB boundary (AXI4 spec, A3.4.1).
_AXI_BOUNDARY_BYTES = 4096
# AXI4 data buses are 8 .. 1024 bits wide.
_AXI_MAX_BYTES_PER_BEAT = 128


class AXI4Signature(wiring.Signature):
    """An AXI4 interface as its master sees it (the slave side uses ``.flip()``).

    Member names follow Xilinx IP (``araddr``, ``arlen``, ... ``rready``), so a component
    member ``axi: Out(AXI4Signature(...))`` comes out of Verilog as ``axi__araddr`` etc.
    ``a*len`` is the beat count minus one (8 bits, AXI4 bursts of up to 256 beats);
    ``a*size`` is log2 of the bytes per beat.

    Parameters
    ----------
    addr_width_bytes : int
        Width of ``araddr``/``awaddr``, byte addresses.
    data_width : int
        Width of ``rdata``/``wdata``: a power-of-two number of bytes, 8 .. 1024 bits.
    id_width : int
        Width of ``arid``/``rid``/``awid``/``bid``, >= 1.
    """

    def __init__(self, addr_width_bytes: int, data_width: int, id_width: int):
        for name, value in (("addr_width_bytes", addr_width_bytes), ("id_width", id_width)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        _check_axi_data_width(data_width)
        self._addr_width_bytes = addr_width_bytes
        self._data_width = data_width
        self._id_width = id_width
        address_channel = {
            "id": Out(id_width), "addr": Out(addr_width_bytes), "len": Out(8),
            "size": Out(3), "burst": Out(2), "lock": Out(1), "cache": Out(4),
            "prot": Out(3), "qos": Out(4), "valid": Out(1), "ready": In(1),
        }
        members = {}
        members.update({f"aw{name}": member for name, member in address_channel.items()})
        members.update({
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        })
        members.update({f"ar{name}": member for name, member in address_channel.items()})
        members.update({
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })
        super().__init__(members)

    @property
    def addr_width_bytes(self) -> int:
        return self._addr_width_bytes

    @property
    def data_width(self) -> int:
        return self._data_width

    @property
    def id_width(self) -> int:
        return self._id_width

    def __eq__(self, other):
        return (isinstance(other, AXI4Signature) and
                (self.addr_width_bytes, self.data_width, self.id_width) ==
                (other.addr_width_bytes, other.data_width, other.id_width))

    def __repr__(self):
        return (f"AXI4Signature(addr_width_bytes={self.addr_width_bytes}, "
                f"data_width={self.data_width}, id_width={self.id_width})")


def _check_axi_data_width(data_width):
    bytes_per_beat = data_width // 8 if isinstance(data_width, int) else None
    if (not isinstance(data_width, int) or isinstance(data_width, bool) or data_width % 8
            or bytes_per_beat & (bytes_per_beat - 1) or
            not 1 <= bytes_per_beat <= _AXI_MAX_BYTES_PER_BEAT):
        raise ValueError(f"data_width must be a power-of-two number of bytes, 8 .. 1024 bits, "
                         f"for AXI4, not {data_width!r}")


def burst_layout(config: MemoryConfig) -> data.StructLayout:
    """One burst of a command: ``beats`` words from word address ``addr``.

    ``beats`` is 0 only for the single burst of a zero-word command; ``last`` marks the
    final burst of a command.
    """
    return data.StructLayout({"addr": unsigned(config.addr_width), "beats": unsigned(9),
                              "last": unsigned(1)})


class BurstSplitter(wiring.Component):
    """Split memory port commands into AXI4 INCR bursts, one burst per cycle.

    Bursts end at multiples of an alignment: the largest power of two of words that is
    at most ``max_burst`` and at most the words of a 4 KiB page (or of the whole
    ``2**addr_width``-word space, where an INCR burst would wrap). So each burst holds
    at most ``max_burst`` words and never crosses a 4 KiB boundary, and the length of
    the next burst is a small subtraction, not a comparison with the distance to the
    page's end: the splitter's recurrence was the AXI master's deepest path (11 logic
    levels for UltraScale+ at the ``kv260`` shape). A command that starts off the
    alignment gets a shorter first burst; with a ``max_burst`` that is not a power of
    two, bursts are at most the power of two below it. A command of ``words == 0``
    becomes one burst of 0 beats.

    Members
    -------
    cmd : ``In(stream.Signature(command_layout(config)))``
        Commands.
    burst : ``Out(stream.Signature(burst_layout(config)))``
        Their bursts, in order.
    """

    def __init__(self, config: MemoryConfig, max_burst: int):
        self._config = config
        boundary_words = min(_AXI_BOUNDARY_BYTES // config.bytes_per_word, 2 ** config.addr_width)
        self._align_words = min(1 << (max_burst.bit_length() - 1), boundary_words)
        super().__init__({
            "cmd": In(stream.Signature(command_layout(config))),
            "burst": Out(stream.Signature(burst_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config

        next_addr = Signal(config.addr_width)
        words_left = Signal(config.len_width)
        busy = Signal()

        piece, final = aligned_piece(m, next_addr, words_left, self._align_words, "burst")
        beats = Signal(9)
        final_burst = Signal()
        m.d.comb += [
            final_burst.eq(final),
            beats.eq(piece),
            self.burst.valid.eq(busy),
            self.burst.payload.addr.eq(next_addr),
            self.burst.payload.beats.eq(beats),
            self.burst.payload.last.eq(final_burst),
            self.cmd.ready.eq(~busy | (self.burst.ready & final_burst)),
        ]

        with m.If(self.burst.valid & self.burst.ready):
            m.d.sync += [next_addr.eq(next_addr + beats), words_left.eq(words_left - beats)]
            with m.If(final_burst):
                m.d.sync += busy.eq(0)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [next_addr.eq(self.cmd.payload.addr),
                         words_left.eq(self.cmd.payload.words),
                         busy.eq(1)]
        return m


class AXI4Master(wiring.Component):
    """Serve the memory port from AXI4 memory (a Zynq HP port, Alveo DDR) as an AXI4 master.

    Each command becomes INCR bursts of at most ``max_burst`` beats that never cross a
    4 KiB boundary (:class:`BurstSplitter`). Byte address = word address *
    ``bytes_per_word``; one beat is one word (``a*size`` = log2(bytes_per_word)); writes
    use full strobes. Every transaction uses ID 0, so the slave returns reads, and write
    responses, in order. Lock, QoS and protection are 0; cache is Normal Non-cacheable,
    Bufferable for reads (``0b0011``) and Non-bufferable for writes (``0b0010``, so a
    write response means the data is in memory: :data:`AXI_CACHE`).

    Reads: up to ``max_outstanding`` read bursts may be in flight (issued on AR, not all
    beats received), which hides the memory latency. R beats land in a small FIFO in
    front of ``read_data``; ``last`` is set on the final beat of each command, counted
    from the burst lengths issued.

    Writes: AW and W run independently (W never waits for AWREADY, as the spec asks).
    ``write_done`` answers a command once the B response of its last burst arrives. A
    zero-word read returns nothing and issues nothing; a zero-word write issues nothing
    and is answered in order with the other commands.

    Errors: ``error`` goes high and stays high until reset when an R beat or B response
    is not OKAY (SLVERR, DECERR, or an EXOKAY that was never asked for), or when RLAST
    is not on the beat the burst length says. Data still flows (the words of a failed
    beat are passed on as the slave gave them), so a client never hangs; it should check
    ``error`` after a transfer. RID/BID are not checked.

    Parameters
    ----------
    config : :class:`MemoryConfig`
        Port geometry; ``data_width`` must be a power-of-two number of bytes, <= 1024 bits.
    axi_id_width : int
        Width of the AXI ID signals, >= 1.
    max_burst : int
        Longest burst in beats, 1 .. 256.
    max_outstanding : int
        Read bursts and write bursts that may be in flight at once, 1 .. 255.

    Members
    -------
    port : ``In(MemoryPortSignature(config))``
        The memory port.
    axi : ``Out(AXI4Signature(addr_width + log2(bytes_per_word), data_width, axi_id_width))``
        The AXI4 master interface.
    error : ``Out(1)``
        Sticky: a response was not OKAY, or RLAST was misplaced.
    """

    def __init__(self, config: MemoryConfig, axi_id_width: int = 1, max_burst: int = 256,
                 max_outstanding: int = 8):
        if not isinstance(config, MemoryConfig):
            raise TypeError(f"config must be a MemoryConfig, not {config!r}")
        _check_axi_data_width(config.data_width)
        if not isinstance(max_burst, int) or isinstance(max_burst, bool) or \
                not 1 <= max_burst <= 256:
            raise ValueError(f"max_burst must be an integer in 1..256, not {max_burst!r}")
        if not isinstance(max_outstanding, int) or isinstance(max_outstanding, bool) or \
                not 1 <= max_outstanding <= 255:
            raise ValueError(f"max_outstanding must be an integer in 1..255, "
                             f"not {max_outstanding!r}")
        self._config = config
        self._max_burst = max_burst
        self._max_outstanding = max_outstanding
        self._byte_shift = exact_log2(config.bytes_per_word)
        super().__init__({
            "port": In(MemoryPortSignature(config)),
            "axi": Out(AXI4Signature(config.addr_width + self._byte_shift, config.data_width,
                                     axi_id_width)),
            "error": Out(1),
        })

    @property
    def config(self) -> MemoryConfig:
        """Port geometry."""
        return self._config

    def elaborate(self, platform):
        m = Module()
        read_error = self._elaborate_reads(m)
        write_error = self._elaborate_writes(m)
        with m.If(read_error | write_error):
            m.d.sync += self.error.eq(1)
        return m

    def _split(self, m, commands, name):
        """``commands`` cut into bursts (:class:`BurstSplitter`), through a register stage:
        the splitter's boundary and length arithmetic then ends at a register instead of
        running on into the queues' write enables and levels (11 logic levels for
        UltraScale+ at the ``kv260`` shape; 69 MHz out of context on ECP5)."""
        m.submodules[f"{name}_splitter"] = splitter = BurstSplitter(self._config, self._max_burst)
        connect(m, commands, splitter.cmd)
        burst = stream.Signature(burst_layout(self._config)).create(path=(f"{name}_burst",))
        register_stage(m, splitter.burst, burst, f"{name}_burst")
        return burst

    def _drive_address_channel(self, m, prefix, queue):
        """Drive AR or AW from a queue of non-empty bursts (valid/ready included)."""
        axi = self.axi
        head = burst_layout(self._config)(queue.r_data)
        m.d.comb += [
            getattr(axi, f"{prefix}valid").eq(queue.r_rdy),
            getattr(axi, f"{prefix}addr").eq(head.addr << self._byte_shift),
            getattr(axi, f"{prefix}len").eq(head.beats - 1),
            getattr(axi, f"{prefix}size").eq(self._byte_shift),
            getattr(axi, f"{prefix}burst").eq(AXI_BURST_INCR),
            getattr(axi, f"{prefix}cache").eq(AXI_CACHE[prefix]),
            queue.r_en.eq(getattr(axi, f"{prefix}ready")),
        ]

    def _elaborate_reads(self, m):
        """Build the read side (command -> AR, R -> read_data); return its error strobe."""
        config, axi = self._config, self.axi
        burst = self._split(m, flipped(self.port.read_cmd), "read")

        # A burst enters the AR queue and the list of bursts awaiting R beats together.
        burst_bits = burst_layout(config).size
        m.submodules.ar_queue = ar_queue = SyncFIFOBuffered(width=burst_bits, depth=2)
        m.submodules.reads_in_flight = reads_in_flight = SyncFIFO(
            width=burst_bits, depth=self._max_outstanding)
        empty_burst = burst.payload.beats == 0
        room = ar_queue.w_rdy & reads_in_flight.w_rdy
        m.d.comb += [
            burst.ready.eq(empty_burst | room),
            ar_queue.w_en.eq(burst.valid & ~empty_burst & room),
            ar_queue.w_data.eq(burst.payload),
            reads_in_flight.w_en.eq(burst.valid & ~empty_burst & room),
            reads_in_flight.w_data.eq(burst.payload),
        ]
        self._drive_address_channel(m, "ar", ar_queue)

        # R beats, counted against the burst at the head of the in-flight list.
        m.submodules.read_buffer = read_buffer = SyncFIFOBuffered(
            width=read_data_layout(config).size, depth=4)
        current = burst_layout(config)(reads_in_flight.r_data)
        beat_index = Signal(8)
        final_beat = Signal()
        beat_taken = Signal()
        m.d.comb += [
            final_beat.eq(beat_index == current.beats - 1),
            axi.rready.eq(read_buffer.w_rdy & reads_in_flight.r_rdy),
            beat_taken.eq(axi.rvalid & axi.rready),
            read_buffer.w_en.eq(axi.rvalid & reads_in_flight.r_rdy),
            read_buffer.w_data.eq(Cat(axi.rdata, final_beat & current.last)),
            reads_in_flight.r_en.eq(beat_taken & final_beat),
        ]
        with m.If(beat_taken):
            m.d.sync += beat_index.eq(Mux(final_beat, 0, beat_index + 1))
        connect(m, read_buffer.r_stream, flipped(self.port.read_data))

        read_error = Signal()
        m.d.comb += read_error.eq(beat_taken & ((axi.rresp != AXI_RESP_OKAY) |
                                                (axi.rlast != final_beat)))
        return read_error

    def _elaborate_writes(self, m):
        """Build the write side (command -> AW, write_data -> W, B -> write_done)."""
        config = self._config
        burst = self._split(m, flipped(self.port.write_cmd), "write")

        # A burst enters the AW queue, the W queue and the B queue together; an empty one
        # (a zero-word command) enters only the B queue, to be answered in order.
        burst_bits = burst_layout(config).size
        m.submodules.aw_queue = aw_queue = SyncFIFOBuffered(width=burst_bits, depth=2)
        m.submodules.w_bursts = w_bursts = SyncFIFO(
            width=burst_bits, depth=self._max_outstanding)
        m.submodules.b_bursts = b_bursts = SyncFIFO(
            width=burst_bits, depth=self._max_outstanding)
        empty_burst = burst.payload.beats == 0
        room = b_bursts.w_rdy & (empty_burst | (aw_queue.w_rdy & w_bursts.w_rdy))
        push = burst.valid & room
        m.d.comb += [
            burst.ready.eq(room),
            aw_queue.w_en.eq(push & ~empty_burst),
            aw_queue.w_data.eq(burst.payload),
            w_bursts.w_en.eq(push & ~empty_burst),
            w_bursts.w_data.eq(burst.payload),
            b_bursts.w_en.eq(push),
            b_bursts.w_data.eq(burst.payload),
        ]
        self._drive_address_channel(m, "aw", aw_queue)
        self._drive_write_beats(m, w_bursts)
        return self._drive_write_responses(m, b_bursts)

    def _drive_write_beats(self, m, w_bursts):
        """Pass write_data to W through a small FIFO, with WLAST from the burst lengths."""
        config, axi = self._config, self.axi
        m.submodules.write_buffer = write_buffer = SyncFIFOBuffered(
            width=config.data_width, depth=4)
        connect(m, flipped(self.port.write_data), write_buffer.w_stream)

        current = burst_layout(config)(w_bursts.r_data)
        beat_index = Signal(8)
        final_beat = Signal()
        beat_sent = Signal()
        m.d.comb += [
            final_beat.eq(beat_index == current.beats - 1),
            axi.wvalid.eq(write_buffer.r_rdy & w_bursts.r_rdy),
            axi.wdata.eq(write_buffer.r_data),
            axi.wstrb.eq(Const(-1, len(axi.wstrb))),
            axi.wlast.eq(final_beat),
            beat_sent.eq(axi.wvalid & axi.wready),
            write_buffer.r_en.eq(beat_sent),
            w_bursts.r_en.eq(beat_sent & final_beat),
        ]
        with m.If(beat_sent):
            m.d.sync += beat_index.eq(Mux(final_beat, 0, beat_index + 1))

    def _drive_write_responses(self, m, b_bursts):
        """Take B responses in burst order and answer write_done per command."""
        axi = self.axi
        current = burst_layout(self._config)(b_bursts.r_data)
        dones_pending = Signal(range(256))
        response_taken = Signal()
        burst_retired = Signal()
        command_done = Signal()
        m.d.comb += [
            axi.bready.eq(b_bursts.r_rdy & (current.beats != 0) & (dones_pending != 255)),
            response_taken.eq(axi.bvalid & axi.bready),
            # An empty burst has no response to wait for.
            burst_retired.eq(response_taken | (b_bursts.r_rdy & (current.beats == 0) &
                                               (dones_pending != 255))),
            b_bursts.r_en.eq(burst_retired),
            command_done.eq(burst_retired & current.last),
            self.port.write_done.valid.eq(dones_pending != 0),
        ]
        done_taken = self.port.write_done.valid & self.port.write_done.ready
        m.d.sync += dones_pending.eq(dones_pending + command_done - done_taken)

        write_error = Signal()
        m.d.comb += write_error.eq(response_taken & (axi.bresp != AXI_RESP_OKAY))
        return write_error
