"""Scale arithmetic on streams: products of scales, and dequantization of accumulators."""

from amaranth import Module, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..fixedpoint import (APPLY_SHIFT_LATENCY, EXPONENT_BITS, MANTISSA_BITS, SCALE_MUL_LATENCY,
                          Pipeline, QueuedPipeline, apply_shift, delay, scale_layout,
                          scale_mul_staged, shift_control_layout, shift_controls)
from ..layouts import vector_beat_layout
from ..staged import product_latency, staged_product
from .common import acc_beat_layout, join, scale_pair_layout

__all__ = ["ScaleMultiply", "Dequantize"]


class ScaleMultiply(wiring.Component):
    """Multiply pairs of scales: ``fixed.scale_mul(a, b)`` (docs/numerics.md section 1).

    The 16 x 16-bit mantissa product is exact; it is renormalised to a 16-bit mantissa
    with the one rounding rule. The exponent of the result must fit the 10 bits of
    ``scale_layout``, as it does for every product the design forms.

    Latency :attr:`LATENCY` cycles (the operands registered, so that no path runs from
    an input port into the multiplier block; the multiplier; the normaliser's priority
    encoder, shifter and rounding add), one pair per cycle.

    Members
    -------
    operands : ``In(stream.Signature(scale_pair_layout))``
        Two scales ``a`` and ``b``.
    product : ``Out(stream.Signature(scale_layout))``
        Their product.
    """

    LATENCY = 1 + SCALE_MUL_LATENCY

    operands: In(stream.Signature(scale_pair_layout))
    product: Out(stream.Signature(scale_layout))

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, self.operands, self.product, self.LATENCY)
        a, b = (delay(m, v, 1, pipe.advance, n)
                for v, n in ((self.operands.payload.a, "a"), (self.operands.payload.b, "b")))
        m.d.comb += self.product.payload.eq(scale_mul_staged(m, a, b, pipe.advance))
        return m


class Dequantize(wiring.Component):
    """Turn TLMM accumulators into int32 Q19.12: ``y = fixed.scale_apply(acc, s)``.

    Every element of a vector is multiplied by the mantissa of the vector's scale ``s``
    (one ``lanes``-wide multiplier row), then shifted by its exponent with round half up
    and saturated to int32 (docs/numerics.md sections 1 and 4: a left shift applies to
    the product pre-saturated to [-2**31, 2**31]).

    The scale of a vector must be valid while the vector's beats are accepted: each beat
    waits for it, and it is taken together with the vector's ``last`` beat.

    Latency :attr:`latency` cycles: the multipliers' input registers, the multipliers
    (partial products of at most 18 x 18 bits, registered, then summed a level a stage;
    the shift's controls are formed beside them), the shifter, the rounding add and the
    saturation; one beat per cycle.

    Parameters
    ----------
    lanes : int
        Elements per beat.
    acc_width : int
        Width of the signed accumulators (at most 47, so the product fits 64 bits as in
        the golden model).

    Members
    -------
    acc : ``In(stream.Signature(acc_beat_layout(lanes, acc_width)))``
        Accumulators in feature order; ``last`` ends a vector.
    scale : ``In(stream.Signature(scale_layout))``
        One scale per vector (``scale_mul(token_scale, output_scale)``).
    out : ``Out(stream.Signature(vector_beat_layout(lanes)))``
        The dequantized vector, beat for beat.
    """

    def __init__(self, lanes: int, acc_width: int):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"Dequantize lanes must be a positive integer, not {lanes!r}")
        if not isinstance(acc_width, int) or not 2 <= acc_width <= 47:
            raise ValueError(f"Dequantize acc_width must be an integer in [2, 47], "
                             f"not {acc_width!r}")
        self._lanes, self._acc_width = lanes, acc_width
        super().__init__({
            "acc": In(stream.Signature(acc_beat_layout(lanes, acc_width))),
            "scale": In(stream.Signature(scale_layout)),
            "out": Out(stream.Signature(vector_beat_layout(lanes))),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def acc_width(self) -> int:
        return self._acc_width

    @property
    def latency(self) -> int:
        """Cycles from a beat in to its result out."""
        return self._product_latency + APPLY_SHIFT_LATENCY

    @property
    def _product_latency(self) -> int:
        # The operands are registered in front of the multipliers, so that no path runs
        # from an input port into a multiplier block; meanwhile the shift's controls
        # take two stages (the negation, then the clamps).
        return 1 + product_latency(signed(self._acc_width), unsigned(MANTISSA_BITS))

    def elaborate(self, platform):
        m = Module()
        beat = join(m, "beat", self.acc, held=[(self.scale, self.acc.payload.last)])
        pipe = QueuedPipeline(m, beat, self.out, self.latency)
        advance, stages = pipe.advance, self._product_latency
        mantissa = delay(m, self.scale.payload.m, 1, advance, "mantissa")
        products = [staged_product(m, delay(m, acc, 1, advance, f"acc{lane}_"), mantissa,
                                   advance, f"product{lane}")
                    for lane, acc in enumerate(self.acc.payload.acc)]
        width = len(products[0])
        shift = Signal(signed(EXPONENT_BITS + 1))
        control = Signal(shift_control_layout(width))
        m.d.sync += [shift.eq(-self.scale.payload.e), control.eq(shift_controls(shift, width))]
        control = delay(m, control, stages - 2, advance, "control")
        m.d.comb += [out.eq(apply_shift(m, p, control, advance, name=f"lane{lane}"))
                     for lane, (out, p) in enumerate(zip(pipe.payload.values, products))]
        m.d.comb += pipe.payload.last.eq(delay(m, self.acc.payload.last, self.latency,
                                               advance, "last"))
        return m
