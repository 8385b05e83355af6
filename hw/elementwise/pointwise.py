"""Element-by-element joins of two vector streams: the residual add and the FFN gating."""

from amaranth import Const, Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import ACTIVATIONS
from ..fixedpoint import Pipeline, saturate, shift_round, sigmoid
from ..layouts import vector_beat_layout
from .common import join

__all__ = ["ResidualAdd", "Gating"]

F_ACT = 12                          # fractional bits of Q19.12
F_SIGMOID = 15                      # the sigmoid table is Q1.15


class ResidualAdd(wiring.Component):
    """Add an update to the residual stream: ``x = sat32(x + y)`` (docs/numerics.md section 7).

    The two vectors are joined beat by beat; ``last`` is taken from ``residual``.

    Latency 1 cycle; one beat per cycle.

    Members
    -------
    residual : ``In(stream.Signature(vector_beat_layout(lanes)))``
    update : ``In(stream.Signature(vector_beat_layout(lanes)))``
    out : ``Out(stream.Signature(vector_beat_layout(lanes)))``
    """

    LATENCY = 1

    def __init__(self, lanes: int):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"ResidualAdd lanes must be a positive integer, not {lanes!r}")
        self._lanes = lanes
        super().__init__({
            "residual": In(stream.Signature(vector_beat_layout(lanes))),
            "update": In(stream.Signature(vector_beat_layout(lanes))),
            "out": Out(stream.Signature(vector_beat_layout(lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        beat = join(m, "beat", self.residual, self.update)
        pipe = Pipeline(m, beat, self.out, self.LATENCY)
        pairs = zip(self.out.payload.values, self.residual.payload.values,
                    self.update.payload.values)
        with m.If(pipe.advance):
            m.d.sync += [out.eq(saturate(a + b)) for out, a, b in pairs]
            m.d.sync += self.out.payload.last.eq(self.residual.payload.last)
        return m


class Gating(wiring.Component):
    """The FFN gating ``act(gate) * up``, exactly as ``golden.model.ffn_activation``.

    ``"silu"``: ``act = shift_round(gate * sigmoid(gate), 15)`` with the 513-entry
    interpolated sigmoid table (one ROM read port per lane); ``"relu2"``:
    ``act = sat32(shift_round(max(gate, 0)**2, 12))``. Then
    ``h = sat32(shift_round(act * up, 12))`` (docs/numerics.md section 7). The two
    vectors are joined beat by beat; ``last`` is taken from ``gate``.

    Latency :attr:`latency` cycles (3 for SiLU, 2 for ReLU^2); one beat per cycle.
    Two multipliers per lane (32 x 17 and 33 x 32 bits for SiLU, 32 x 32 and 32 x 32
    for ReLU^2).

    Members
    -------
    gate : ``In(stream.Signature(vector_beat_layout(lanes)))``
    up : ``In(stream.Signature(vector_beat_layout(lanes)))``
    out : ``Out(stream.Signature(vector_beat_layout(lanes)))``
    """

    def __init__(self, lanes: int, activation: str):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"Gating lanes must be a positive integer, not {lanes!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"Gating activation must be one of {ACTIVATIONS}, "
                             f"not {activation!r}")
        self._lanes, self._activation = lanes, activation
        super().__init__({
            "gate": In(stream.Signature(vector_beat_layout(lanes))),
            "up": In(stream.Signature(vector_beat_layout(lanes))),
            "out": Out(stream.Signature(vector_beat_layout(lanes))),
        })

    @property
    def latency(self) -> int:
        return 3 if self._activation == "silu" else 2

    def elaborate(self, platform):
        m = Module()
        beat = join(m, "beat", self.gate, self.up)
        pipe = Pipeline(m, beat, self.out, self.latency)
        lanes = zip(self.gate.payload.values, self.up.payload.values, self.out.payload.values)
        for lane, (gate, up, out) in enumerate(lanes):
            act, up_held = self._activation_stages(m, pipe, lane, gate, up)
            with m.If(pipe.advance):
                m.d.sync += out.eq(saturate(shift_round(act * up_held, Const(F_ACT))))
        lasts = [self.gate.payload.last] + [Signal(name=f"last{k}") for k in range(1, self.latency)]
        with m.If(pipe.advance):
            m.d.sync += [b.eq(a) for a, b in zip(lasts, lasts[1:] + [self.out.payload.last])]
        return m

    def _activation_stages(self, m, pipe, lane, gate, up):
        """Registers of ``act(gate)`` and of ``up`` one stage before the output."""
        act = Signal(signed(33), name=f"act{lane}")
        ups = [Signal(signed(32), name=f"up{lane}_{k}") for k in range(self.latency - 1)]
        with m.If(pipe.advance):
            m.d.sync += [ups[0].eq(up)] + [b.eq(a) for a, b in zip(ups, ups[1:])]
        if self._activation == "silu":
            gate_held = Signal(signed(32), name=f"gate{lane}")
            sig = sigmoid(m, gate, pipe.advance, name=f"sigmoid{lane}")
            with m.If(pipe.advance):
                m.d.sync += gate_held.eq(gate)
                m.d.sync += act.eq(shift_round(gate_held * sig, Const(F_SIGMOID)))
        else:
            positive = Mux(gate > 0, gate, 0)
            with m.If(pipe.advance):
                m.d.sync += act.eq(saturate(shift_round(positive * positive, Const(F_ACT))))
        return act, ups[-1]
