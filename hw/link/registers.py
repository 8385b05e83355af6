"""The registers the host reads and writes over the link (SET and GET)."""

from dataclasses import dataclass

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .commands import RegisterBusSignature

__all__ = ["Register", "RegisterFile"]


@dataclass(frozen=True)
class Register:
    """A 32-bit register: ``writable`` ones are set by the host and drive the design;
    the others show a value of the design (status, counters)."""
    name: str
    index: int
    writable: bool = False
    init: int = 0


class RegisterFile(wiring.Component):
    """Registers at fixed indices behind the link's register bus.

    Members
    -------
    bus : ``In(RegisterBusSignature())``
    <name> : ``Out(32)`` for each writable register, ``In(32)`` for each other one.
    """

    def __init__(self, registers):
        self._registers = tuple(registers)
        indices = [r.index for r in self._registers]
        if len(set(indices)) != len(indices) or not all(0 <= i < 256 for i in indices):
            raise ValueError(f"register indices must be distinct and 0..255: {indices}")
        super().__init__({
            "bus": In(RegisterBusSignature()),
            **{r.name: Out(32, init=r.init) if r.writable else In(32) for r in self._registers},
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        for register in self._registers:
            value = getattr(self, register.name)
            with m.If(bus.index == register.index):
                m.d.comb += [bus.exists.eq(1), bus.writable.eq(register.writable),
                             bus.read_data.eq(value)]
                if register.writable:
                    with m.If(bus.write):
                        m.d.sync += value.eq(bus.write_data)
        return m
