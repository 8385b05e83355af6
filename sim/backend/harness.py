"""The simulated accelerator the product runs: the top with its link fed by chunks,
on on-chip memory, on a board memory model, or behind UARTs (``sim/backend/bridge.py``
drives them). Gateware built only for simulation; no board instantiates it.
"""

from amaranth import Module, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tritium.hw.link.uart import UARTReceiver, UARTTransmitter
from tritium.hw.memory import BoardMemory
from tritium.hw.memory.fabric import BoardPorts
from tritium.hw.top import Top

__all__ = ["ChunkFeeder", "SimTop", "BoardSimTop", "UartSimTop", "CHUNK_BYTES"]

CHUNK_BYTES = 32            # host-link bytes the simulation bridge hands over per transfer
CHUNK_LAYOUT = data.StructLayout({"data": unsigned(8 * CHUNK_BYTES),
                                  "count": unsigned(CHUNK_BYTES.bit_length())})


class ChunkFeeder(wiring.Component):
    """Bytes arriving :data:`CHUNK_BYTES` at a time, leaving one per cycle.

    Handing over a byte per cycle from Python would cost a Python step per cycle; a
    chunk (``count`` bytes, lowest first) costs one per 32 bytes, and its bytes then
    leave on ``bytes`` one per cycle, as from a UART or a FIFO on a board.

    Members
    -------
    chunks : ``In(stream.Signature(CHUNK_LAYOUT))``
    bytes : ``Out(stream.Signature(8))``
    """

    chunks: In(stream.Signature(CHUNK_LAYOUT))
    bytes: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        held = Signal(8 * CHUNK_BYTES)
        left = Signal(range(CHUNK_BYTES + 1))
        m.d.comb += [self.chunks.ready.eq(left == 0),
                     self.bytes.valid.eq(left != 0), self.bytes.payload.eq(held[:8])]
        with m.If(self.chunks.valid & self.chunks.ready):
            m.d.sync += [held.eq(self.chunks.payload.data), left.eq(self.chunks.payload.count)]
        with m.If(self.bytes.valid & self.bytes.ready):
            m.d.sync += [held.eq(held >> 8), left.eq(left - 1)]
        return m


def _bridge_members():
    """The ports ``sim/backend/bridge.py`` drives: link bytes in by chunks, out one per cycle."""
    return {"rx_chunks": In(stream.Signature(CHUNK_LAYOUT)), "tx": Out(stream.Signature(8))}


class SimTop(wiring.Component):
    """The accelerator's :class:`~tritium.hw.top.Top` with its link bytes arriving
    through a :class:`ChunkFeeder`, for the simulation bridge (``sim/backend/bridge.py``).

    Members
    -------
    rx_chunks : ``In(stream.Signature(CHUNK_LAYOUT))``
    tx : ``Out(stream.Signature(8))``
    """

    def __init__(self, config):
        self._top = Top(config)
        super().__init__(_bridge_members())

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self._top
        m.submodules.feeder = feeder = ChunkFeeder()
        wiring.connect(m, wiring.flipped(self.rx_chunks), feeder.chunks)
        wiring.connect(m, feeder.bytes, top.rx)
        wiring.connect(m, top.tx, wiring.flipped(self.tx))
        return m


class BoardSimTop(wiring.Component):
    """The accelerator's :class:`~tritium.hw.top.Top` on a board's memory: its memory port
    on the first ``config.memory_ports`` ports of a
    :class:`~tritium.hw.memory.BoardMemory` of ``config.memory_words`` words with the
    bandwidth and latency of ``model`` at the design's clock (through
    :class:`~tritium.hw.memory.fabric.BoardPorts`, striped in chunks of the port's longest
    burst when there are several, as on the board), filled through the backdoor (the
    full-size simulations; ``sim/backend/bridge.py`` drives it).

    Members
    -------
    rx_chunks, tx : as :class:`SimTop`
    backdoor_load : ``In(1)``
        Load the image file named by ``+tritium_memory_image=PATH`` at this clock edge.
    read_words, written_words : ``Out(32).array(config.memory_ports)``
        Words through each port of the memory model since reset.
    """

    def __init__(self, config, model):
        ports = config.memory_ports
        self._top = Top(config, onchip=False)
        self._memory = BoardMemory(config.memory, config.memory_words, model, config.clock_hz,
                                   ports=ports, storage="backdoor")
        self._ports = BoardPorts(config, model.burst_words(0, config.memory.bytes_per_word))
        #: Verilog that the generated Verilog instantiates (``sim.backend.cosim`` builds it too).
        self.verilog_library = self._memory.verilog_library
        super().__init__({**_bridge_members(), "backdoor_load": In(1),
                          "read_words": Out(32).array(ports),
                          "written_words": Out(32).array(ports)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self._top
        m.submodules.feeder = feeder = ChunkFeeder()
        m.submodules.memory = memory = self._memory
        wiring.connect(m, wiring.flipped(self.rx_chunks), feeder.chunks)
        wiring.connect(m, feeder.bytes, top.rx)
        wiring.connect(m, top.tx, wiring.flipped(self.tx))
        m.submodules.ports = ports = self._ports
        wiring.connect(m, top.memory, ports.units)
        if self._top.config.weight_port:
            wiring.connect(m, top.weights, ports.weights)
        for inner, outer in zip(ports.memory, memory.port):
            wiring.connect(m, inner, outer)
        m.d.comb += memory.load.eq(self.backdoor_load)
        for i in range(len(self.read_words)):
            m.d.comb += [self.read_words[i].eq(memory.read_words[i]),
                         self.written_words[i].eq(memory.written_words[i])]
        return m


class UartSimTop(wiring.Component):
    """A board core whose host link is a UART (``rx``/``tx`` serial lines, e.g. the
    ULX3S's ``BoardCore``) between two UARTs that play the host's USB-serial chip, for
    the simulation bridge: every byte crosses the serial lines bit by bit.

    Parameters
    ----------
    core : wiring.Component
        With ``rx: In(1)`` and ``tx: Out(1)`` serial lines.
    divisor : int
        Clock cycles per bit of the host-side UARTs: the core's own.

    Members
    -------
    rx_chunks, tx : as :class:`SimTop`
    """

    def __init__(self, core, divisor: int):
        self._core, self._divisor = core, divisor
        super().__init__(_bridge_members())

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self._core
        m.submodules.feeder = feeder = ChunkFeeder()
        m.submodules.host_tx = host_tx = UARTTransmitter(self._divisor)
        m.submodules.host_rx = host_rx = UARTReceiver(self._divisor)
        wiring.connect(m, wiring.flipped(self.rx_chunks), feeder.chunks)
        wiring.connect(m, feeder.bytes, host_tx.data)
        m.d.comb += [core.rx.eq(host_tx.tx), host_rx.rx.eq(core.tx)]
        wiring.connect(m, host_rx.data, wiring.flipped(self.tx))
        return m
