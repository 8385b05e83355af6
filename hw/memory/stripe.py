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
"""

from amaranth import Array, Module, Mux, Signal
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

    Throughput: one word per cycle to the client, when the ports deliver it. With
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
        Words buffered per port (default ``4 * chunk_words``).
    chunks_in_flight : int
        Chunks issued and not yet delivered (default 32).

    Members
    -------
    client : ``In(MemoryPortSignature(config))``
    memory : ``Out(MemoryPortSignature(config)).array(ports)``
    """

    #: Cycles the striper adds to a read, command to first word: the chunk's command
    #: register, then the port's buffer.
    LATENCY = 3

    def __init__(self, config: MemoryConfig, ports: int, chunk_words: int,
                 buffer_words: int = None, chunks_in_flight: int = 32):
        if not isinstance(config, MemoryConfig):
            raise TypeError(f"config must be a MemoryConfig, not {config!r}")
        if not isinstance(ports, int) or isinstance(ports, bool) or ports < 2:
            raise ValueError(f"a striper needs at least 2 ports, not {ports!r}")
        if (not isinstance(chunk_words, int) or isinstance(chunk_words, bool)
                or chunk_words < 1 or chunk_words & (chunk_words - 1)
                or chunk_words >= 2 ** config.len_width):
            raise ValueError(f"chunk_words must be a power of two below "
                             f"2**{config.len_width}, not {chunk_words!r}")
        buffer_words = 4 * chunk_words if buffer_words is None else buffer_words
        for name, value in (("buffer_words", buffer_words), ("chunks_in_flight", chunks_in_flight)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self._config, self._ports, self._chunk_words = config, ports, chunk_words
        self._buffer_words, self._chunks_in_flight = buffer_words, chunks_in_flight
        super().__init__({
            "client": In(MemoryPortSignature(config)),
            "memory": Out(MemoryPortSignature(config)).array(ports),
        })

    @property
    def config(self) -> MemoryConfig:
        return self._config

    @property
    def ports(self) -> int:
        return self._ports

    def elaborate(self, platform):
        m = Module()
        route_layout = data.StructLayout({"port": unsigned(ceil_log2(self._ports)),
                                          "final": unsigned(1)})
        m.submodules.routes = routes = SyncFIFOBuffered(width=route_layout.size,
                                                        depth=self._chunks_in_flight)
        self._split(m, routes, route_layout)
        self._merge(m, routes, route_layout)
        client, first = flipped(self.client), flipped(self.memory[0])
        for channel in ("write_cmd", "write_data", "write_done"):
            connect(m, getattr(client, channel), getattr(first, channel))
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
        addr = Mux(busy, held_addr, command.payload.addr)
        left = Mux(busy, held_left, command.payload.words)
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
        buffers = []
        for index in range(self._ports):
            source = self.memory[index].read_data
            buffer = SyncFIFOBuffered(width=len(source.payload.as_value()),
                                      depth=self._buffer_words)
            m.submodules[f"buffer{index}"] = buffer
            m.d.comb += [buffer.w_data.eq(source.payload), buffer.w_en.eq(source.valid),
                         source.ready.eq(buffer.w_rdy)]
            buffers.append(buffer)
        route = route_layout(routes.r_data)
        sink = self.client.read_data
        layout = sink.payload.shape()
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
