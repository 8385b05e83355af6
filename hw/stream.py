"""Generic stream blocks."""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Broadcast"]


class Broadcast(wiring.Component):
    """Hand each input payload to every output; the next is taken once all have it.

    Registered: an accepted payload is offered on all outputs from the next cycle,
    and each output's ``valid`` drops as soon as that output has taken it, so no
    output's ``valid`` depends on another's ``ready``.

    Members
    -------
    i : ``In(stream.Signature(shape))``
    o : ``Out(stream.Signature(shape))`` each, named by ``outputs``
    """

    def __init__(self, shape, outputs):
        self._outputs = tuple(outputs)
        super().__init__({"i": In(stream.Signature(shape)),
                          **{name: Out(stream.Signature(shape)) for name in self._outputs}})

    def elaborate(self, platform):
        m = Module()
        outputs = [getattr(self, name) for name in self._outputs]
        held = Signal(self.i.payload.shape())
        pending, still_pending = Signal(len(outputs)), Signal(len(outputs))
        for index, out in enumerate(outputs):
            m.d.comb += [out.valid.eq(pending[index]), out.payload.eq(held),
                         still_pending[index].eq(pending[index] & ~out.ready)]
        m.d.comb += self.i.ready.eq(still_pending == 0)
        m.d.sync += pending.eq(still_pending)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [pending.eq(~0), held.eq(self.i.payload)]
        return m
