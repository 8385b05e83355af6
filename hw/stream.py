"""Generic stream blocks."""

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Broadcast", "Handshake", "register_stage", "skid"]


class Handshake:
    """A ``valid``/``ready`` pair standing for a condition, as the source of a pipeline
    (:class:`~tritium.hw.fixedpoint.Pipeline`, :class:`~tritium.hw.fixedpoint.QueuedPipeline`)."""

    def __init__(self, name: str):
        self.valid = Signal(name=f"{name}_valid")
        self.ready = Signal(name=f"{name}_ready")

    @property
    def transfer(self):
        return self.valid & self.ready


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


def register_stage(m: Module, source, sink, name: str):
    """``source`` to ``sink`` through one register stage of full throughput whose
    ``ready`` to ``source`` is a register too (a skid buffer): a payload that arrives
    while ``sink`` refuses waits in the skid register. One cycle of latency; neither
    ``sink.valid`` nor ``source.ready`` depends on the other side combinationally."""
    skid_payload = Signal.like(source.payload, name=f"{name}_skid")
    skid_valid = Signal(name=f"{name}_skid_valid")
    m.d.comb += source.ready.eq(~skid_valid)
    with m.If(~sink.valid | sink.ready):
        with m.If(skid_valid):
            m.d.sync += [sink.valid.eq(1), sink.payload.eq(skid_payload), skid_valid.eq(0)]
        with m.Else():
            m.d.sync += [sink.valid.eq(source.valid), sink.payload.eq(source.payload)]
    with m.Elif(source.valid & ~skid_valid):
        m.d.sync += [skid_payload.eq(source.payload), skid_valid.eq(1)]


def skid(m: Module, source, sink, name: str):
    """``source`` to ``sink`` with no added latency but a registered ``ready``.

    ``source.ready`` is a flip-flop (no payload waits in the skid register), so the
    ``ready`` of whatever feeds ``source`` -- often the common enable of a whole
    pipeline, with a large fan-out -- starts at a register instead of running on from
    ``sink.ready`` through the consumer's logic. A payload that ``sink`` refuses
    waits in the skid register and is offered first; ``source`` waits meanwhile, so
    each stall costs ``source`` one cycle more than it costs ``sink``. ``valid`` and
    the payload pass through combinationally (one multiplexer).
    """
    skid_payload = Signal.like(source.payload, name=f"{name}_skid")
    skid_valid = Signal(name=f"{name}_skid_valid")
    m.d.comb += [source.ready.eq(~skid_valid),
                 sink.valid.eq(skid_valid | source.valid),
                 sink.payload.eq(Mux(skid_valid, skid_payload, source.payload))]
    with m.If(skid_valid):
        with m.If(sink.ready):
            m.d.sync += skid_valid.eq(0)
    with m.Elif(source.valid & ~sink.ready):
        m.d.sync += [skid_payload.eq(source.payload), skid_valid.eq(1)]
