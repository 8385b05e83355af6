"""One memory port shared by several clients at once: reads granted in turn, writes
from the first client only.

At the board level two clients read the same memory ports: the accelerator's port and
the TLMM's weight reader, each striped across the board's ports by a
:class:`~tritium.hw.memory.stripe.PortStriper`. Each board port (an AXI master, or one
port of :class:`~tritium.hw.memory.BoardMemory`) then serves both stripers. Unlike
:class:`~tritium.hw.memory.mux.PortMux` nothing says whose turn it is, so
:class:`PortArbiter` must stay correct whatever the clients do at the same time.

Only the first client writes. The only writer at the board level is the unit port's
striper, whose writes all go to its port 0 anyway; passing one client's writes through
unchanged keeps every write command one stream of words with its own ``write_done``,
and needs no second route queue.
"""

from amaranth import Array, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, connect, flipped
from amaranth.utils import ceil_log2

from ..stream import register_stage
from .port import MemoryConfig, MemoryPortSignature, command_layout

__all__ = ["PortArbiter"]


class PortArbiter(wiring.Component):
    """``clients`` memory ports served by one (module docstring).

    **Reads.** At most one read command is granted per cycle, round-robin among the
    clients with a command waiting: the search for the next grant starts after the
    client granted last, so a waiting client is granted within ``clients`` grants. The
    granted command goes to the memory through a register stage and its client into a
    queue of routes (``reads_in_flight`` entries: commands granted whose words have not
    all been delivered). Words from the memory go to the client at the head of that
    queue (``valid`` to that client only, its ``ready`` back to the memory), ``last``
    included; the route leaves on ``last``. Data return in command order, so a client
    that holds back its words holds back the words of every command granted after it.
    A read of zero words is taken from its client and dropped: the memory would return
    nothing for it, and its route would never leave.

    **Writes.** Client 0's ``write_cmd``, ``write_data`` and ``write_done`` connect to
    the memory's unchanged. Every other client's ``write_cmd`` and ``write_data`` are
    never ready and its ``write_done`` never valid: a write there waits for ever.

    With ``background`` client 0 reads in the background: it is granted only in a cycle
    no other client has a read command waiting, and the others are granted in their
    order (the datapath's weight prefetcher, which keeps its reads in flight few, so
    that a unit's read waits behind at most those: docs/accelerator.md).

    Throughput: a read command per cycle while the route queue has room, a read word
    per cycle.

    Parameters
    ----------
    config : :class:`MemoryConfig`
    clients : int
        Clients, >= 2.
    reads_in_flight : int
        Read commands granted and not yet delivered, >= 1 (default 32).
    background : bool
        Client 0 only when no other waits (default False: round-robin).

    Members
    -------
    client : ``In(MemoryPortSignature(config)).array(clients)``
    memory : ``Out(MemoryPortSignature(config))``
    """

    #: Cycles the arbiter adds to a read, command to first word: the granted command's
    #: register stage. The route, queued in the grant's cycle, is at the head of its
    #: queue at most two cycles later: no later than the first word of a memory that
    #: registers the command it takes (every memory here does).
    LATENCY = 1

    def __init__(self, config: MemoryConfig, clients: int = 2, reads_in_flight: int = 32,
                 background: bool = False):
        if not isinstance(config, MemoryConfig):
            raise TypeError(f"config must be a MemoryConfig, not {config!r}")
        if not isinstance(clients, int) or isinstance(clients, bool) or clients < 2:
            raise ValueError(f"an arbiter needs at least 2 clients, not {clients!r}")
        if (not isinstance(reads_in_flight, int) or isinstance(reads_in_flight, bool)
                or reads_in_flight < 1):
            raise ValueError(f"reads_in_flight must be a positive integer, "
                             f"not {reads_in_flight!r}")
        self._config, self._clients, self._reads_in_flight = config, clients, reads_in_flight
        self._background = background
        super().__init__({
            "client": In(MemoryPortSignature(config)).array(clients),
            "memory": Out(MemoryPortSignature(config)),
        })

    @property
    def config(self) -> MemoryConfig:
        return self._config

    @property
    def clients(self) -> int:
        return self._clients

    def elaborate(self, platform):
        m = Module()
        m.submodules.routes = routes = SyncFIFOBuffered(width=ceil_log2(self._clients),
                                                        depth=self._reads_in_flight)
        self._grant(m, routes)
        self._deliver(m, routes)
        writer, memory = flipped(self.client[0]), flipped(self.memory)
        for channel in ("write_cmd", "write_data", "write_done"):
            connect(m, getattr(writer, channel), getattr(memory, channel))
        for client in self.client[1:]:
            # Never ready, never valid: a second writer is not supported (docstring).
            m.d.comb += [client.write_cmd.ready.eq(0), client.write_data.ready.eq(0),
                         client.write_done.valid.eq(0)]
        return m

    def _grant(self, m, routes):
        """Pick one waiting read command a cycle, round-robin: to the memory's command
        register, its client to ``routes``."""
        count = self._clients
        commands = [client.read_cmd for client in self.client]
        # A zero-word read is not a request: it is taken at once (below) and dropped.
        requests = [command.valid & (command.payload.words != 0) for command in commands]
        # The client the search starts from: the one after the last granted.
        first = Signal(range(count), name="grant_first")
        granted = Signal(range(count), name="granted")
        pending = Signal(name="grant_pending")
        if self._background:
            for offset, index in enumerate([*range(1, count), 0]):
                with (m.If if offset == 0 else m.Elif)(requests[index]):
                    m.d.comb += [granted.eq(index), pending.eq(1)]
        else:
            with m.Switch(first):
                for start in range(count):
                    with m.Case(start):
                        for offset in range(count):
                            index = (start + offset) % count
                            with (m.If if offset == 0 else m.Elif)(requests[index]):
                                m.d.comb += [granted.eq(index), pending.eq(1)]
        # The registered command: nothing runs from a client's command to the memory's
        # command logic in one cycle.
        chosen = stream.Signature(command_layout(self._config)).create(path=("chosen",))
        register_stage(m, chosen, self.memory.read_cmd, "chosen")
        issue = Signal(name="issue")
        m.d.comb += [issue.eq(pending & chosen.ready & routes.w_rdy),
                     chosen.valid.eq(pending & routes.w_rdy),
                     chosen.payload.eq(Array(command.payload for command in commands)[granted]),
                     routes.w_en.eq(issue), routes.w_data.eq(granted)]
        for index, command in enumerate(commands):
            m.d.comb += command.ready.eq((command.payload.words == 0)
                                         | (issue & (granted == index)))
        with m.If(issue):
            m.d.sync += first.eq(Mux(granted == count - 1, 0, granted + 1))

    def _deliver(self, m, routes):
        """The memory's words to the client at the head of ``routes``, which leaves on
        ``last``."""
        source = self.memory.read_data
        owner = routes.r_data
        sinks = [client.read_data for client in self.client]
        ready = Signal(name="deliver_ready")
        m.d.comb += [ready.eq(Array(sink.ready for sink in sinks)[owner]),
                     source.ready.eq(routes.r_rdy & ready),
                     routes.r_en.eq(source.valid & source.ready & source.payload.last)]
        for index, sink in enumerate(sinks):
            m.d.comb += [sink.payload.eq(source.payload),
                         sink.valid.eq(source.valid & routes.r_rdy & (owner == index))]
