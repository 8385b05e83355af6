"""Sharing one memory port between clients that take turns."""

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..stream import register_stage
from .port import MemoryConfig, MemoryPortSignature

__all__ = ["PortMux", "PortRegisters", "UNIT_PORT_LATENCY", "WEIGHT_PORT_LATENCY"]

CHANNELS = ("read_cmd", "read_data", "write_cmd", "write_data", "write_done")
# The channels from the client to the memory; the others run back.
TO_MEMORY = ("read_cmd", "write_cmd", "write_data")


class PortMux(wiring.Component):
    """Connect the client named by ``select`` to the memory; the others see a port that
    never moves (no ``ready``, no ``valid``).

    The clients take turns, they do not share: whoever changes ``select`` must wait
    until the current client has received every read word and write acknowledgement
    it asked for.

    Members
    -------
    <client> : ``In(MemoryPortSignature(memory))`` each, named by ``clients``
    select : ``In(range(len(clients)))``
    memory : ``Out(MemoryPortSignature(memory))``
    """

    def __init__(self, memory: MemoryConfig, clients):
        self._clients = tuple(clients)
        super().__init__({
            **{name: In(MemoryPortSignature(memory)) for name in self._clients},
            "select": In(range(len(self._clients))),
            "memory": Out(MemoryPortSignature(memory)),
        })

    def elaborate(self, platform):
        m = Module()
        with m.Switch(self.select):
            for index, name in enumerate(self._clients):
                with m.Case(index):
                    client, memory = wiring.flipped(getattr(self, name)), wiring.flipped(self.memory)
                    for channel in CHANNELS:
                        wiring.connect(m, getattr(client, channel), getattr(memory, channel))
        return m


class PortRegisters(wiring.Component):
    """A register stage (:func:`~tritium.hw.stream.register_stage`) on every channel of a
    memory port, both ways: no path runs combinationally from a client through to the
    memory, or back.

    Without it, a command formed combinationally in a unit (its address and word count
    from the instruction) ran through the datapath's and the top's port multiplexers
    into the memory's command logic in one cycle: the slowest paths of the whole ULX3S
    design (docs/timing.md). Full throughput; a command reaches the memory
    :data:`LATENCY` cycle later, and so does each read word and write acknowledgement
    on its way back: a read's first word comes ``2 * LATENCY`` cycles later in all.

    Members
    -------
    client : ``In(MemoryPortSignature(memory))``
    memory : ``Out(MemoryPortSignature(memory))``
    """

    #: Cycles each channel's register stage adds.
    LATENCY = 1

    def __init__(self, memory: MemoryConfig):
        super().__init__({"client": In(MemoryPortSignature(memory)),
                          "memory": Out(MemoryPortSignature(memory))})

    def elaborate(self, platform):
        m = Module()
        for channel in CHANNELS:
            ends = getattr(self.client, channel), getattr(self.memory, channel)
            source, sink = ends if channel in TO_MEMORY else ends[::-1]
            register_stage(m, source, sink, channel)
        return m


#: Cycles the port registers add to a datapath unit's read, command to first word: a
#: PortRegisters on the unit's port (hw/control/datapath.py) and one on the top's
#: (hw/top.py), each a cycle out and a cycle back.
UNIT_PORT_LATENCY = 2 * 2 * PortRegisters.LATENCY

#: The same for the weight port's clients (the TLMM and the head, a design with
#: ``weight_port``): the top's PortRegisters alone, a cycle out and a cycle back.
WEIGHT_PORT_LATENCY = 2 * PortRegisters.LATENCY
