"""One memory port served by several: reads striped across them in chunks, in order.

A board's memory often has several ports that each sustain a fraction of what the
memory does (the KV260's four HP ports: 3.96 GB/s alone, 13.33 GB/s together;
``hw/memory_model.py``). :class:`PortStriper` lets the accelerator's single memory port
use them all: every read command is cut into chunks at ``chunk_words``-aligned
addresses, the chunks go to the ports in turn (one port after another, whatever the
address), each port's words wait in a buffer of its own, and the words leave in the
command's order. All ports must see the same memory, as the HP ports see the PS DDR
and :class:`~tritium.hw.memory.BoardMemory`'s ports see one storage.

Writes all go to the first port, whole. They are a small share of the traffic (at the
``kv260`` preset a decode token writes its KV records, 2,688 words, against about 4.4
million words of weights read), and one port keeps each write command one stream of
bursts with one acknowledgement: the port's ``write_done`` is the command's. A client
that reads what it wrote waits for ``write_done`` first (the port's contract,
``hw/memory/port.py``), so a read on another port sees the data.

A client may also read words ``ratio`` times as wide as the ports' (``ratio`` > 1): each
wide word is ``ratio`` port words side by side (:meth:`MemoryConfig.widened`), so a wide
stream gets all the ports' bandwidth while the other units keep the port width. The
KV260 design streams its ternary weights so, 512 bits wide over four 256-bit HP ports.
Such a client only reads (the TLMM's weight reader).
"""

from amaranth import Array, C, Cat, Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, connect, flipped
from amaranth.utils import ceil_log2

from ..stream import register_stage
from .port import MemoryConfig, MemoryPortSignature, aligned_piece, command_layout

__all__ = ["PortStriper"]


class PortStriper(wiring.Component):
    """The client's memory port striped across ``ports`` memory ports (module docstring).

    A read command of ``words`` words from ``addr`` becomes chunks that end at multiples
    of ``chunk_words`` (the first may start inside one), one chunk issued per cycle, each
    to the next port in turn; chunk ``i`` of all the commands so far goes to port
    ``i % ports``. Each port's words wait in a buffer of ``buffer_words``; the client
    receives them in command order, ``last`` on its command's final word. Up to
    ``chunks_in_flight`` chunks may be issued and not yet delivered. A read of zero words
    returns nothing, as the memories do. Write commands, their data and acknowledgements
    pass to and from port 0 unchanged.

    With ``ratio`` > 1 the client's words are ``ratio`` port words wide (its port is
    ``config.widened(ratio)``): a read of ``words`` wide words at wide address ``addr``
    reads port words ``ratio * addr`` .. ``ratio * (addr + words) - 1``, cut into chunks
    as above, and wide word ``i`` is port words ``ratio * i`` .. ``ratio * i + ratio - 1``,
    the lowest-addressed in the low bits. A chunk then holds whole wide words, so each
    port's words are packed into wide words before its buffer and the client still takes
    one buffer entry, one wide word, per cycle. Such a client only reads: its write
    channels are never ready, ``write_done`` never valid, and the ports' write channels
    stay idle.

    Throughput: one (wide) word per cycle to the client, when the ports deliver it. With
    ``chunk_words`` the ports' longest burst (one burst per chunk) and ``buffer_words``
    a few chunks, every port streams while the client drains another.

    Parameters
    ----------
    config : :class:`MemoryConfig`
    ports : int
        Memory ports, >= 2.
    chunk_words : int
        Words per chunk: a power of two, at most what a command can carry.
    buffer_words : int
        Port words buffered per port (default ``4 * chunk_words``; with ``ratio`` > 1
        rounded up to whole wide words).
    chunks_in_flight : int
        Chunks issued and not yet delivered (default 32).
    ratio : int
        Port words per client word: a power of two, at most ``chunk_words`` (default 1).

    Members
    -------
    client : ``In(MemoryPortSignature(config.widened(ratio)))``
    memory : ``Out(MemoryPortSignature(config)).array(ports)``
    """

    #: Cycles the striper adds to a read, command to first word: the chunk's command
    #: register, then the port's buffer (with ``ratio`` > 1, see :attr:`latency`).
    LATENCY = 3

    def __init__(self, config: MemoryConfig, ports: int, chunk_words: int,
                 buffer_words: int = None, chunks_in_flight: int = 32, ratio: int = 1):
        if not isinstance(config, MemoryConfig):
            raise TypeError(f"config must be a MemoryConfig, not {config!r}")
        if not isinstance(ports, int) or isinstance(ports, bool) or ports < 2:
            raise ValueError(f"a striper needs at least 2 ports, not {ports!r}")
        if (not isinstance(chunk_words, int) or isinstance(chunk_words, bool)
                or chunk_words < 1 or chunk_words & (chunk_words - 1)
                or chunk_words >= 2 ** config.len_width):
            raise ValueError(f"chunk_words must be a power of two below "
                             f"2**{config.len_width}, not {chunk_words!r}")
        client = config.widened(ratio)            # refuses a ratio not a power of two
        if chunk_words < ratio:
            raise ValueError(f"chunk_words ({chunk_words}) must be at least ratio ({ratio}): "
                             f"a chunk carries whole wide words")
        buffer_words = 4 * chunk_words if buffer_words is None else buffer_words
        for name, value in (("buffer_words", buffer_words), ("chunks_in_flight", chunks_in_flight)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self._config, self._ports, self._chunk_words = config, ports, chunk_words
        self._buffer_words, self._chunks_in_flight = buffer_words, chunks_in_flight
        self._ratio = ratio
        super().__init__({
            "client": In(MemoryPortSignature(client)),
            "memory": Out(MemoryPortSignature(config)).array(ports),
        })

    @property
    def config(self) -> MemoryConfig:
        return self._config

    @property
    def ports(self) -> int:
        return self._ports

    @property
    def ratio(self) -> int:
        return self._ratio

    @property
    def latency(self) -> int:
        """Cycles this striper adds to a read, command to first word: :attr:`LATENCY`,
        plus with ``ratio`` > 1 the ``ratio - 1`` cycles the rest of the first wide word's
        port words take after its first when the port delivers one per cycle (a slower
        port takes its word time for each)."""
        return self.LATENCY + self._ratio - 1

    def elaborate(self, platform):
        m = Module()
        route_layout = data.StructLayout({"port": unsigned(ceil_log2(self._ports)),
                                          "final": unsigned(1)})
        m.submodules.routes = routes = SyncFIFOBuffered(width=route_layout.size,
                                                        depth=self._chunks_in_flight)
        self._split(m, routes, route_layout)
        self._merge(m, routes, route_layout)
        if self._ratio == 1:
            client, first = flipped(self.client), flipped(self.memory[0])
            for channel in ("write_cmd", "write_data", "write_done"):
                connect(m, getattr(client, channel), getattr(first, channel))
        # A wide client only reads: its write channels and the ports' stay at their
        # reset values (never ready, never valid).
        return m

    def _split(self, m, routes, route_layout):
        """Cut read commands into chunks: each to its port's command register, its route
        (port, final chunk of the command) to ``routes``."""
        config, ports = self._config, self._ports
        command = self.client.read_cmd
        # The command being cut: its next address and words left. A command's first chunk
        # is cut straight from the client's payload, so a short command costs no cycle more.
        held_addr = Signal(config.addr_width, name="held_addr")
        held_left = Signal(config.len_width, name="held_left")
        busy = Signal(name="cutting")
        # A wide command in port words: its address and length times ``ratio``.
        shift = self._ratio.bit_length() - 1
        start, length = command.payload.addr, command.payload.words
        if shift:
            start, length = Cat(C(0, shift), start), Cat(C(0, shift), length)
        addr = Mux(busy, held_addr, start)
        left = Mux(busy, held_left, length)
        words, final = aligned_piece(m, addr, left, self._chunk_words, "chunk")
        port = Signal(range(ports), name="next_port")
        chunks = [stream.Signature(command_layout(config)).create(path=(f"chunk{p}",))
                  for p in range(ports)]
        for index, chunk in enumerate(chunks):
            register_stage(m, chunk, self.memory[index].read_cmd, f"chunk{index}")
        to_port = Array(chunks)[port]
        pending = busy | (command.valid & (command.payload.words != 0))
        issue = Signal(name="issue")
        route = Signal(route_layout, name="route_in")
        m.d.comb += [issue.eq(pending & to_port.ready & routes.w_rdy),
                     to_port.valid.eq(pending & routes.w_rdy),
                     to_port.payload.addr.eq(addr), to_port.payload.words.eq(words),
                     routes.w_en.eq(issue),
                     route.port.eq(port), route.final.eq(final), routes.w_data.eq(route),
                     # A zero-word read is taken and dropped.
                     command.ready.eq(~busy & (issue | (command.payload.words == 0)))]
        with m.If(issue):
            m.d.sync += [port.eq(Mux(port == ports - 1, 0, port + 1)),
                         held_addr.eq(addr + words), held_left.eq(left - words),
                         busy.eq(~final)]

    def _merge(self, m, routes, route_layout):
        """Each port's words into its buffer; the client takes them in the routes' order."""
        sink = self.client.read_data
        layout = sink.payload.shape()
        buffers = []
        for index in range(self._ports):
            source = self.memory[index].read_data
            if self._ratio == 1:
                buffer = SyncFIFOBuffered(width=len(source.payload.as_value()),
                                          depth=self._buffer_words)
                m.d.comb += [buffer.w_data.eq(source.payload), buffer.w_en.eq(source.valid),
                             source.ready.eq(buffer.w_rdy)]
            else:
                buffer = SyncFIFOBuffered(width=layout.size,
                                          depth=-(-self._buffer_words // self._ratio))
                self._pack(m, source, buffer, layout, index)
            m.submodules[f"buffer{index}"] = buffer
            buffers.append(buffer)
        route = route_layout(routes.r_data)
        word = layout(Array(buffer.r_data for buffer in buffers)[route.port])
        ready = Array(buffer.r_rdy for buffer in buffers)[route.port]
        taken = Signal(name="merge_taken")
        m.d.comb += [sink.valid.eq(routes.r_rdy & ready),
                     sink.payload.data.eq(word.data),
                     sink.payload.last.eq(word.last & route.final),
                     taken.eq(sink.valid & sink.ready),
                     routes.r_en.eq(taken & word.last)]
        for index, buffer in enumerate(buffers):
            m.d.comb += buffer.r_en.eq(taken & (route.port == index))

    def _pack(self, m, source, buffer, layout, index):
        """Port ``index``'s words into its buffer ``ratio`` at a time, the first in the low
        bits. A chunk holds whole wide words, so its ``last`` ends one. The wide word
        enters the buffer with its last port word, so packing adds no register stage."""
        ratio, width = self._ratio, self._config.data_width
        held = Signal((ratio - 1) * width, name=f"pack{index}_held")
        count = Signal(range(ratio), name=f"pack{index}_count")
        complete = count == ratio - 1
        word = Signal(layout, name=f"pack{index}_word")
        m.d.comb += [word.data.eq(Cat(held, source.payload.data)),
                     word.last.eq(source.payload.last),
                     buffer.w_data.eq(word), buffer.w_en.eq(source.valid & complete),
                     source.ready.eq(~complete | buffer.w_rdy)]
        with m.If(source.valid & source.ready):
            # Each word enters at the top and moves down one word per word after it;
            # the count wraps to 0 with the wide word's last (ratio is a power of two).
            m.d.sync += [held.eq(Cat(held[width:], source.payload.data)),
                         count.eq(count + 1)]
