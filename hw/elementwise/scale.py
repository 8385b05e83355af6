"""Scale arithmetic on streams: products of scales, and dequantization of accumulators."""

from amaranth import Module, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..fixedpoint import (EXPONENT_BITS, MANTISSA_BITS, Pipeline, apply_shift, normalize_scale,
                          scale_layout)
from ..layouts import vector_beat_layout
from .common import acc_beat_layout, join, scale_pair_layout

__all__ = ["ScaleMultiply", "Dequantize"]


class ScaleMultiply(wiring.Component):
    """Multiply pairs of scales: ``fixed.scale_mul(a, b)`` (docs/numerics.md section 1).

    The 16 x 16-bit mantissa product is exact; it is renormalised to a 16-bit mantissa
    with the one rounding rule. The exponent of the result must fit the 10 bits of
    ``scale_layout``, as it does for every product the design forms.

    Latency 2 cycles; one pair per cycle.

    Members
    -------
    operands : ``In(stream.Signature(scale_pair_layout))``
        Two scales ``a`` and ``b``.
    product : ``Out(stream.Signature(scale_layout))``
        Their product.
    """

    LATENCY = 2

    operands: In(stream.Signature(scale_pair_layout))
    product: Out(stream.Signature(scale_layout))

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, self.operands, self.product, self.LATENCY)
        a, b = self.operands.payload.a, self.operands.payload.b
        mantissa = Signal(unsigned(2 * MANTISSA_BITS))
        exponent = Signal(signed(EXPONENT_BITS + 1))
        with m.If(pipe.advance):
            m.d.sync += [mantissa.eq(a.m * b.m), exponent.eq(a.e + b.e)]
            m.d.sync += self.product.payload.eq(normalize_scale(mantissa, exponent))
        return m


class Dequantize(wiring.Component):
    """Turn TLMM accumulators into int32 Q19.12: ``y = fixed.scale_apply(acc, s)``.

    Every element of a vector is multiplied by the mantissa of the vector's scale ``s``
    (one ``lanes``-wide multiplier row), then shifted by its exponent with round half up
    and saturated to int32 (docs/numerics.md sections 1 and 4: a left shift applies to
    the product pre-saturated to [-2**31, 2**31]).

    The scale of a vector must be valid while the vector's beats are accepted: each beat
    waits for it, and it is taken together with the vector's ``last`` beat.

    Latency 2 cycles; one beat per cycle.

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

    LATENCY = 2

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

    def elaborate(self, platform):
        m = Module()
        beat = join(m, "beat", self.acc, held=[(self.scale, self.acc.payload.last)])
        pipe = Pipeline(m, beat, self.out, self.LATENCY)
        products = [Signal(signed(self._acc_width + MANTISSA_BITS + 1), name=f"product{lane}")
                    for lane in range(self._lanes)]
        shift = Signal(signed(EXPONENT_BITS + 1))
        last = Signal()
        with m.If(pipe.advance):
            m.d.sync += [p.eq(acc * self.scale.payload.m)
                         for p, acc in zip(products, self.acc.payload.acc)]
            m.d.sync += [shift.eq(-self.scale.payload.e), last.eq(self.acc.payload.last)]
            m.d.sync += [out.eq(apply_shift(p, shift))
                         for out, p in zip(self.out.payload.values, products)]
            m.d.sync += self.out.payload.last.eq(last)
        return m
