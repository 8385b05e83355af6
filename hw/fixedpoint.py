"""Gateware for the fixed-point operations of docs/numerics.md.

Each function here builds the logic of one operation of the golden model's fixed-point
primitives (``sim/golden/fixed.py``; formats and tables from ``hw/numerics.py``) and
matches it bit for bit over the operand widths that docs/numerics.md states. The
combinational ones (:func:`bit_length`, :func:`shift_round`, :func:`normalize_scale`)
return Amaranth values; the table look-ups need a memory read, so they add their
logic to a module under an ``enable`` (the pipeline advance of the caller) and have a
latency of one cycle, stated per function. :class:`Pipeline` is the valid/ready
skeleton that every fixed-latency stream stage of the element-wise and attention units
is built on.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory

from .numerics import (EXP2_TABLE, EXPONENT_BITS, INT32_MAX, INT32_MIN, MANTISSA_BITS,
                       RECIP_TABLE, RSQRT_TABLE, SIGMOID_TABLE)

__all__ = ["MANTISSA_BITS", "EXPONENT_BITS", "scale_layout", "Pipeline", "bit_length",
           "shift_round", "shift_round_signed", "saturate", "normalize_scale",
           "InterpolatedTable", "exp2_table", "RECIPROCAL_LATENCY", "reciprocal",
           "scale_mul", "apply_shift", "normalize_even", "RSQRT_LATENCY", "rsqrt",
           "SIGMOID_LATENCY", "sigmoid"]

scale_layout = data.StructLayout({"m": unsigned(MANTISSA_BITS), "e": signed(EXPONENT_BITS)})


class Pipeline:
    """Valid bits and the common advance of a fixed-latency pipeline between two streams.

    Every stage register of the pipeline is written ``with m.If(pipe.advance)``; the
    pipeline moves as a whole whenever its output is free or taken, so it carries one
    beat per cycle and holds everything while ``sink`` refuses. ``valid[k]`` is the
    valid bit after k register stages (``valid[0]`` is the input transfer).
    """

    def __init__(self, m: Module, source, sink, latency: int):
        self.advance = Signal()
        self.valid = [Signal(name=f"valid{k}") for k in range(latency + 1)]
        m.d.comb += [
            self.advance.eq(~sink.valid | sink.ready),
            source.ready.eq(self.advance),
            self.valid[0].eq(source.valid),
            sink.valid.eq(self.valid[latency]),
        ]
        with m.If(self.advance):
            for k in range(latency):
                m.d.sync += self.valid[k + 1].eq(self.valid[k])

    @property
    def accept(self):
        """The input beat is taken this cycle."""
        return self.valid[0] & self.advance


def bit_length(value):
    """Bits needed for an unsigned value (0 for 0): a log-depth priority encoder."""
    width = len(value)
    if width == 1:
        return value[0]
    half = width // 2
    high, low = value[half:], value[:half]
    return Mux(high != 0, half + bit_length(high), bit_length(low))


def shift_round(value, shift, max_shift: int = None):
    """``(value + 2**(shift-1)) >> shift`` for an unsigned ``shift`` (no rounding at 0).

    Round half up with an arithmetic shift, as ``fixed.shift_round`` for ``shift >= 0``.
    Shifts at or beyond ``len(value) + 1`` give 0 there as here, so the shift amount is
    clamped to that (or to ``max_shift``) to bound the shifter. The result has the
    signedness of ``value`` and one bit more.
    """
    limit = max_shift if max_shift is not None else len(value) + 1
    if (1 << len(shift)) - 1 > limit:
        shift = Mux(shift > limit, limit, shift)[:limit.bit_length()]
    half = (Const(1, 1) << shift) >> 1
    result = ((value + half) >> shift)[:len(value) + 1]
    return result.as_signed() if value.shape().signed else result


def shift_round_signed(value, shift, max_left: int, max_right: int = None):
    """``fixed.shift_round`` for a signed ``shift``: left shifts up to ``max_left`` bits."""
    right = shift_round(value, Mux(shift > 0, shift, 0)[:len(shift) - 1], max_right)
    left = value << Mux(shift < 0, -shift, 0)[:max_left.bit_length()]
    return Mux(shift > 0, right, left)


def saturate(value, low: int = INT32_MIN, high: int = INT32_MAX):
    """Clamp to [low, high], as ``fixed.saturate`` (a signed 32-bit result by default)."""
    width = max(high.bit_length(), (-low - 1).bit_length()) + 1
    return Mux(value > high, high, Mux(value < low, low, value))[:width].as_signed()


def normalize_scale(value, exponent, m: Module = None, name: str = "normalize"):
    """``fixed.scale_from_int(value, exponent)`` as a ``scale_layout`` value.

    Keeps the top 16 bits of the unsigned ``value``, rounded half up; a carry out of
    the rounding renormalises. Zero gives ``(0, 0)``. With a module ``m``, ``value`` is
    first held in a combinational signal of ``m``, so an expression (a multiplier, a
    table interpolation) is built once and not once per use in the normaliser.
    """
    if m is not None:
        held = Signal(len(value), name=f"{name}_value")
        m.d.comb += held.eq(value)
        value = held
    if len(value) <= MANTISSA_BITS:
        value = value.as_unsigned() | Const(0, MANTISSA_BITS + 1)
    value = value.as_unsigned()
    length = bit_length(value)
    big = length > MANTISSA_BITS
    down = Mux(big, length - MANTISSA_BITS, 0)[:len(length)]
    rounded = shift_round(value, down)
    carry = big & rounded[MANTISSA_BITS]
    up = Mux(big, 0, MANTISSA_BITS - length)[:MANTISSA_BITS.bit_length()]
    mantissa = Mux(big, rounded >> carry, value << up)[:MANTISSA_BITS]
    exp = (exponent + length - MANTISSA_BITS + carry).as_signed() | Const(0, signed(EXPONENT_BITS))
    zero = value == 0
    return scale_layout(Cat(Mux(zero, 0, mantissa)[:MANTISSA_BITS],
                            Mux(zero, 0, exp)[:EXPONENT_BITS]))


class InterpolatedTable:
    """``table[i] + shift_round((table[i+1] - table[i]) * f, frac_bits)`` behind a ROM.

    The ROM holds each entry with its difference to the next, so one read serves the
    interpolation. ``add(m, index, frac, enable)`` reads at ``index`` under ``enable``
    and returns the interpolated value one enabled cycle later (latency 1).
    """

    def __init__(self, name: str, table, frac_bits: int = 8):
        self.name = name
        self.table = [int(v) for v in table]
        self.frac_bits = frac_bits
        self.entries = len(self.table) - 1
        deltas = [b - a for a, b in zip(self.table, self.table[1:])]
        self.value_width = max(v.bit_length() for v in self.table)
        self.delta_width = max(max(abs(d) for d in deltas).bit_length() + 1, 2)
        self._rows = [{"low": a, "delta": d} for a, d in zip(self.table, deltas)]
        self._layout = data.StructLayout({"low": unsigned(self.value_width),
                                          "delta": signed(self.delta_width)})

    def add(self, m: Module, index, frac, enable):
        rom = Memory(shape=self._layout, depth=self.entries, init=self._rows)
        m.submodules[self.name] = rom
        port = rom.read_port()
        frac_held = Signal(self.frac_bits, name=f"{self.name}_frac")
        m.d.comb += [port.addr.eq(index), port.en.eq(enable)]
        with m.If(enable):
            m.d.sync += frac_held.eq(frac)
        step = shift_round(port.data.delta * frac_held, Const(self.frac_bits))
        return (port.data.low + step)[:self.value_width + 1].as_unsigned()


def exp2_table():
    """2**(-f/256) as Q1.15 for f in [0, 256): a plain ROM (no interpolation)."""
    return [int(v) for v in EXP2_TABLE]


RECIPROCAL_LATENCY = 2


def reciprocal(m: Module, value, enable, name: str = "reciprocal"):
    """``fixed.reciprocal(value)`` for an unsigned ``value``: a scale, two cycles later.

    Cycle 0 normalises ``value`` to its top 16 bits and reads the table; cycle 1
    interpolates; the result is registered (latency ``RECIPROCAL_LATENCY``).
    """
    held = Signal(len(value), name=f"{name}_value")
    m.d.comb += held.eq(value)
    value = held
    length = bit_length(value)
    down = Signal(signed(len(length) + 1), name=f"{name}_down")
    top = Signal(MANTISSA_BITS, name=f"{name}_top")
    m.d.comb += [down.eq(length - MANTISSA_BITS),
                 top.eq(Mux(value == 0, 1 << 15,
                            Mux(down >= 0, value >> down[:len(down) - 1],
                                value << (MANTISSA_BITS - length)[:5])))]
    table = InterpolatedTable(name, RECIP_TABLE)
    approx = table.add(m, (top >> 8) - 128, top[:8], enable)
    length_held = Signal.like(length, name=f"{name}_length")
    zero_held = Signal(name=f"{name}_zero")
    result = Signal(scale_layout, name=f"{name}_result")
    with m.If(enable):
        m.d.sync += [length_held.eq(length), zero_held.eq(value == 0)]
        m.d.sync += result.eq(Mux(zero_held, 0, normalize_scale(approx, -22 - length_held, m,
                                                                  name=f"{name}_approx")))
    return result


def scale_mul(m: Module, a, b, name: str = "scale_mul"):
    """``fixed.scale_mul(a, b)``: the exact 32-bit mantissa product, renormalised.

    ``a`` and ``b`` are ``scale_layout`` values (or constants of it). Combinational; the
    product is a named signal of ``m`` so the normaliser does not copy the multiplier.
    """
    product = Signal(2 * MANTISSA_BITS, name=f"{name}_product")
    m.d.comb += product.eq(a.m * b.m)
    return normalize_scale(product, a.e + b.e)


def apply_shift(product, shift):
    """``fixed.scale_apply`` after its multiply: ``sat32(shift_round(product, shift))``.

    For ``scale_apply(v, s, f)`` pass ``product = v * s.m`` (best from a register) and
    ``shift = -(s.e + f)``; ``shift`` is signed. A left shift (``shift < 0``) applies to the product
    pre-saturated to [-2**31, 2**31] and is clamped at 31 bits; a right shift is
    clamped at 62 bits; both exactly as the golden model does them. Combinational.
    """
    right_amount = Mux(shift > 0, shift, 0)[:len(shift) - 1]
    right = shift_round(product, right_amount, max_shift=min(62, len(product) + 1))
    left_amount = Mux(shift < -31, 31, Mux(shift < 0, -shift, 0))[:5]
    left = saturate(product, INT32_MIN, INT32_MAX + 1) << left_amount
    return saturate(Mux(shift > 0, right, left))


def normalize_even(m: Module, value, name: str = "normalize_even"):
    """``fixed.normalize_even(value)`` for an unsigned ``value`` of any width, as (top, shift).

    ``top`` (16 bits unsigned) is ``floor(value / 2**shift)``, in [2**14, 2**16) for a
    non-zero value; ``shift`` (signed) is ``bit_length(value) - 16`` rounded up to even.
    Combinational (a priority encoder and a barrel shifter as wide as ``value``); the
    two results are named signals of ``m``.
    """
    length = Signal(range(len(value) + 1), name=f"{name}_length")
    shift = Signal(signed(len(length) + 2), name=f"{name}_shift")
    top = Signal(MANTISSA_BITS, name=f"{name}_top")
    right = (value >> Mux(shift > 0, shift, 0)[:len(length)])[:MANTISSA_BITS]
    left = (value[:MANTISSA_BITS] << Mux(shift < 0, -shift, 0)[:5])[:MANTISSA_BITS]
    m.d.comb += [length.eq(bit_length(value)), shift.eq(length - MANTISSA_BITS + length[0]),
                 top.eq(Mux(shift > 0, right, left))]
    return top, shift


RSQRT_LATENCY = 2


def rsqrt(m: Module, top, shift, enable, name: str = "rsqrt"):
    """``fixed.rsqrt(top, shift)`` as a ``scale_layout`` value, two enabled cycles later.

    ``top`` in [2**14, 2**16) and the even signed ``shift`` come from
    :func:`normalize_even`. Cycle 0 reads the table; cycle 1 interpolates and
    normalises into the result register (latency ``RSQRT_LATENCY``).
    """
    table = InterpolatedTable(name, RSQRT_TABLE)
    approx = Signal(table.value_width + 1, name=f"{name}_approx")
    m.d.comb += approx.eq(table.add(m, (top >> 8) - 64, top[:8], enable))
    shift_held = Signal(signed(len(shift)), name=f"{name}_shift")
    result = Signal(scale_layout, name=f"{name}_result")
    with m.If(enable):
        m.d.sync += shift_held.eq(shift)
        m.d.sync += result.eq(normalize_scale(approx, -34 - (shift_held >> 1)))
    return result


SIGMOID_LATENCY = 1


def sigmoid(m: Module, x, enable, name: str = "sigmoid"):
    """``fixed.sigmoid(x)`` for a signed Q.12 ``x``: Q1.15 (17 bits), one enabled cycle later.

    ``x`` is saturated to [-16, 16) and offset by 16 to index the 513-entry table;
    the returned value is combinational from the table's read register.
    """
    offset = 16 << 12
    index = (saturate(x, -offset, offset - 1) + offset)[:17]
    return InterpolatedTable(name, SIGMOID_TABLE).add(m, index[8:], index[:8], enable)
