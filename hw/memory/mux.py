"""Sharing one memory port between clients that take turns."""

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .port import MemoryConfig, MemoryPortSignature

__all__ = ["PortMux"]

CHANNELS = ("read_cmd", "read_data", "write_cmd", "write_data", "write_done")


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
