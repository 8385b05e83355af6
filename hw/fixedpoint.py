"""Gateware for the fixed-point operations of docs/numerics.md.

Each function here builds the logic of one operation of the golden model's fixed-point
primitives (``sim/golden/fixed.py``; formats and tables from ``hw/numerics.py``) and
matches it bit for bit over the operand widths that docs/numerics.md states. The
combinational ones (:func:`bit_length`, :func:`shift_round`, :func:`normalize_scale`)
return Amaranth values; the staged ones (the table look-ups, the normalisers,
:func:`apply_shift`) add their registers to a module under an ``enable`` (the
pipeline advance of the caller), one multiplier, carry chain, shifter or block-RAM read
per stage (docs/timing.md), and state their latency as a constant beside them.
:class:`QueuedPipeline` (stages that move every cycle, a queue behind them) and
:class:`Pipeline` (stages that hold together under one enable, for short pipelines and
sinks without a payload) are the valid/ready skeletons that every fixed-latency stream
stage of the element-wise and attention units is built on.
"""

from amaranth import Cat, Const, Module, Mux, Shape, Signal, Value
from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory

from .numerics import (EXP2_TABLE, EXPONENT_BITS, INT32_MAX, INT32_MIN, MANTISSA_BITS,
                       RECIP_TABLE, RSQRT_TABLE, SIGMOID_TABLE)

__all__ = ["MANTISSA_BITS", "EXPONENT_BITS", "scale_layout", "Pipeline", "QueuedPipeline",
           "bit_length",
           "shift_round", "shift_round_signed", "saturate", "normalize_scale",
           "InterpolatedTable", "exp2_table", "RECIPROCAL_LATENCY", "reciprocal",
           "scale_mul", "apply_shift", "normalize_even", "RSQRT_LATENCY", "rsqrt",
           "SIGMOID_LATENCY", "sigmoid", "delay", "top_index", "saturate_bits",
           "NORMALIZE_LATENCY", "normalize_scale_staged", "SCALE_MUL_LATENCY",
           "scale_mul_staged", "APPLY_SHIFT_LATENCY", "shift_control_layout",
           "shift_controls", "NORMALIZE_EVEN_LATENCY"]

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


class QueuedPipeline:
    """A fixed-latency pipeline between two streams whose stages move every cycle, with
    a queue behind it that holds its results while ``sink`` refuses.

    No enable reaches the stage registers (``advance`` is the constant 1, so the stage
    helpers take it as their ``enable``): on an FPGA a pipeline-wide enable is a net of
    hundreds or thousands of loads that routing must reach and timing must cross
    (docs/timing.md). A beat is taken only while the queue has room for it and for
    every beat in flight: a credit count, so ``source.ready`` comes from a register and
    never from ``sink.ready``. A result leaves straight from the last stage when the
    queue is empty and ``sink`` takes it, so the latency is the stages' alone; otherwise
    it waits in the queue (``latency + 1`` entries of LUT RAM, enough for the pipeline
    to carry one beat per cycle).

    The stages write their result into :attr:`payload` (shaped like ``sink.payload``),
    not into ``sink.payload``. ``valid[k]`` is the valid bit after k stages
    (``valid[0]`` is the input transfer, also :attr:`accept`).
    """

    advance = Const(1)

    def __init__(self, m: Module, source, sink, latency: int, name: str = "pipeline"):
        self.valid = [Signal(name=f"valid{k}") for k in range(latency + 1)]
        self.payload = Signal(sink.payload.shape(), name=f"{name}_result", reset_less=True)
        depth = latency + 1
        queue = m.submodules[f"{name}_queue"] = SyncFIFO(
            width=Shape.cast(sink.payload.shape()).width, depth=depth)
        room = Signal(range(depth + 1), init=depth, name=f"{name}_room")
        arrives = self.valid[latency]
        self.accept = self.valid[0]                   # the input beat is taken this cycle
        m.d.comb += [
            source.ready.eq(room != 0),
            self.valid[0].eq(source.valid & source.ready),
            sink.valid.eq(queue.r_rdy | arrives),
            sink.payload.eq(Mux(queue.r_rdy, queue.r_data, self.payload)),
            queue.r_en.eq(sink.ready),
            queue.w_data.eq(self.payload),
            queue.w_en.eq(arrives & (queue.r_rdy | ~sink.ready)),
        ]
        m.d.sync += [self.valid[k + 1].eq(self.valid[k]) for k in range(latency)]
        m.d.sync += room.eq(room - self.accept + (sink.valid & sink.ready))


def bit_length(value):
    """Bits needed for an unsigned value (0 for 0): a log-depth priority encoder."""
    width = len(value)
    if width == 1:
        return value[0]
    half = width // 2
    high, low = value[half:], value[:half]
    return Mux(high != 0, half + bit_length(high), bit_length(low))


def top_index(value):
    """Index of the highest set bit of an unsigned ``value`` (0 for 0 and 1): a priority
    encoder.

    A tree of multiplexers over ``value`` padded to a power of two, each level choosing a
    half by whether its top half has a bit set; unlike :func:`bit_length` it has no
    adders, so it maps to LUTs alone (``bit_length = index + 1`` for a non-zero value).
    """
    value = value.as_unsigned()
    width = 1 << max(len(value) - 1, 1).bit_length()
    value = Cat(value, Const(0, width - len(value)))
    if width == 2:
        return value[1]
    high, low = value[width // 2:], value[:width // 2]
    select = high.any()
    return Cat(Mux(select, top_index(high), top_index(low)), select)


def saturate_bits(value, width: int):
    """``saturate(value, -2**(width-1), 2**(width-1) - 1)``, as a signed ``width``-bit value.

    The value fits where its bits from ``width - 1`` up are all equal to its sign (all
    zero for an unsigned value): reductions (LUTs) rather than the two comparators
    (carry chains) of :func:`saturate`, so it can follow an adder in one stage.
    """
    if not value.shape().signed:
        if len(value) < width:
            return value
        return Mux(value[width - 1:].any(), (1 << (width - 1)) - 1, value[:width]).as_signed()
    if len(value) <= width:
        return value.as_signed()
    sign, top = value[-1], value[width - 1:]
    fits = top.all() | ~top.any()
    return Mux(fits, value[:width], Cat((~sign).replicate(width - 1), sign)).as_signed()


def shift_round(value, shift, max_shift: int = None):
    """``(value + 2**(shift-1)) >> shift`` for an unsigned ``shift`` (no rounding at 0).

    Round half up with an arithmetic shift, as ``fixed.shift_round`` for ``shift >= 0``.
    Shifts at or beyond ``len(value) + 1`` give 0 there as here, so the shift amount is
    clamped to that (or to ``max_shift``) to bound the shifter. The result has the
    signedness of ``value`` and one bit more.
    """
    # Every shift from len(value) + 1 up gives 0, so a larger max_shift changes nothing.
    limit = min(max_shift if max_shift is not None else len(value) + 1, len(value) + 1)
    if (1 << len(shift)) - 1 > limit:
        shift = Mux(shift > limit, limit, shift)[:limit.bit_length()]
    # 2**(shift-1) decoded bit by bit: as wide as the largest shift, not 2**len(shift)
    # bits as a variable left shift of a constant would make it.
    half = Cat(*(shift == k for k in range(1, limit + 1)))
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
    interpolation. The entry scaled up by ``frac_bits`` with the rounding half in its
    low bits is a concatenation, not an addition, so the entry, the half and the product
    meet in one adder: ``(table[i] * 2**f + 2**(f-1) + delta * frac) >> f`` is the
    interpolation exactly.
    ``add(m, index, frac, enable)`` reads at ``index`` under ``enable`` and returns the
    interpolated value, registered, :attr:`LATENCY` enabled cycles later: the read,
    the read data registered, the product, the sum (one block RAM, multiplier or carry
    chain per stage; docs/timing.md).
    """

    LATENCY = 4

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

    def add(self, m: Module, index, frac, enable, attrs=None):
        """``attrs``: the ROM's attributes (a platform's choice of RAM, e.g.
        ``hw.weights.ram_attributes``)."""
        rom = Memory(shape=self._layout, depth=self.entries, init=self._rows, attrs=attrs)
        m.submodules[self.name] = rom
        port = rom.read_port()
        name = self.name
        frac1, frac2 = (Signal(self.frac_bits, name=f"{name}_frac{k}", reset_less=True)
                        for k in (1, 2))
        row = Signal(self._layout, name=f"{name}_row", reset_less=True)
        low3 = Signal(self.value_width + self.frac_bits, name=f"{name}_low3", reset_less=True)
        product = Signal(signed(self.delta_width + self.frac_bits + 1),
                         name=f"{name}_product", reset_less=True)
        result = Signal(self.value_width + 1, name=f"{name}_result", reset_less=True)
        m.d.comb += [port.addr.eq(index), port.en.eq(enable)]
        with m.If(enable):
            m.d.sync += [frac1.eq(frac),                                        # 1: read
                         row.eq(port.data), frac2.eq(frac1),                    # 2: held
                         product.eq(row.delta * frac2),                         # 3: product
                         low3.eq(Cat(Const(1 << (self.frac_bits - 1), self.frac_bits),
                                     row.low)),
                         result.eq((low3 + product) >> self.frac_bits)]         # 4: sum
        return result


def exp2_table():
    """2**(-f/256) as Q1.15 for f in [0, 256): a plain ROM (no interpolation)."""
    return [int(v) for v in EXP2_TABLE]


def delay(m: Module, value, stages: int, enable, name: str, *, reset_less: bool = True):
    """``value`` through ``stages`` registers that move under ``enable``.

    The registers are reset-less unless ``reset_less`` is false: data in a pipeline
    means nothing without its valid bit, and a reset that reaches every data register
    is a net of tens of thousands of loads (docs/timing.md). A valid bit or any other
    control state passes ``reset_less=False``."""
    for stage in range(1, stages + 1):
        held = Signal.like(value, name=f"{name}{stage}", reset_less=reset_less)
        with m.If(enable):
            m.d.sync += held.eq(value)
        value = held
    return value


NORMALIZE_LATENCY = 3


def normalize_scale_staged(m: Module, value, exponent, enable, name: str = "normalize",
                           zero=None):
    """:func:`normalize_scale` as a registered ``scale_layout`` value,
    :data:`NORMALIZE_LATENCY` enabled cycles after ``value`` and ``exponent``.

    One operation a stage: the priority encoder; the barrel shifter, which puts the top
    set bit of ``value`` at bit 16 of a 17-bit ``w`` (the bits below it dropped); the
    rounding add, ``(w + 1) >> 1``. That is the golden rounding, as ``(value +
    2**(s-1)) >> s == ((value >> (s-1)) + 1) >> 1`` for a shift ``s >= 1``, and exact
    for ``s <= 0`` (``w`` is even there); ``w + 1`` carries out only for an all-ones
    ``w``, which renormalises to ``2**15`` one exponent up. A true ``zero`` (taken with
    ``value``) gives the zero scale whatever ``value``.
    """
    value = Value.cast(value).as_unsigned()
    index = top_index(value)
    value1 = Signal(len(value), name=f"{name}_value1", reset_less=True)
    index1 = Signal(len(index), name=f"{name}_index1", reset_less=True)
    zero1, zero2 = (Signal(name=f"{name}_zero{k}", reset_less=True) for k in (1, 2))
    # The exponent wraps at EXPONENT_BITS, as the result's field does; stage 2 forms it
    # with and without the rounding carry, so that stage 3 only selects.
    exp1, exp2, exp2_up = (Signal(EXPONENT_BITS, name=f"{name}_{n}", reset_less=True)
                           for n in ("exp1", "exp2", "exp2_up"))
    aligned = Signal(MANTISSA_BITS + 1, name=f"{name}_aligned", reset_less=True)
    result = Signal(scale_layout, name=f"{name}_result", reset_less=True)
    carry = aligned.all()
    mantissa = Mux(carry, 1 << (MANTISSA_BITS - 1), ((aligned + 1) >> 1)[:MANTISSA_BITS])
    with m.If(enable):
        m.d.sync += [value1.eq(value), index1.eq(index), exp1.eq(exponent),      # 1: encode
                     zero1.eq(value == 0 if zero is None else (value == 0) | zero),
                     aligned.eq((Cat(Const(0, MANTISSA_BITS), value1) >> index1)  # 2: shift
                                [:MANTISSA_BITS + 1]),
                     exp2.eq(exp1 + index1 - (MANTISSA_BITS - 1)),
                     exp2_up.eq(exp1 + index1 - (MANTISSA_BITS - 2)), zero2.eq(zero1),
                     result.eq(Mux(zero2, 0, Cat(mantissa, Mux(carry, exp2_up, exp2))))]  # 3
    return result


RECIPROCAL_LATENCY = 2 + InterpolatedTable.LATENCY + NORMALIZE_LATENCY


def reciprocal(m: Module, value, enable, name: str = "reciprocal"):
    """``fixed.reciprocal(value)`` for an unsigned ``value``: a scale,
    :data:`RECIPROCAL_LATENCY` enabled cycles later.

    Stages: the priority encoder; the barrel shifter to the top 16 bits ``t`` of
    ``value`` (``t[15]`` is set, so the table index ``(t >> 8) - 128`` is ``t[8:15]``); the
    table (:attr:`InterpolatedTable.LATENCY`); :func:`normalize_scale_staged`.
    """
    value = Value.cast(value).as_unsigned()
    index = top_index(value)
    value1 = Signal(len(value), name=f"{name}_value1", reset_less=True)
    index1 = Signal(len(index), name=f"{name}_index1", reset_less=True)
    zero1, zero2 = (Signal(name=f"{name}_zero{k}", reset_less=True) for k in (1, 2))
    top2 = Signal(MANTISSA_BITS, name=f"{name}_top2", reset_less=True)
    exp2 = Signal(EXPONENT_BITS, name=f"{name}_exp2", reset_less=True)
    with m.If(enable):
        m.d.sync += [value1.eq(value), index1.eq(index), zero1.eq(value == 0),
                     # Zero reads the table at 1.0; its result is dropped.
                     top2.eq(Mux(zero1, 1 << 15, (Cat(Const(0, MANTISSA_BITS - 1), value1)
                                                  >> index1)[:MANTISSA_BITS])),
                     # -22 - bit_length(value)
                     exp2.eq(-23 - index1), zero2.eq(zero1)]
    table = InterpolatedTable(name, RECIP_TABLE)
    approx = table.add(m, top2[8:15], top2[:8], enable)
    exponent = delay(m, exp2, table.LATENCY, enable, f"{name}_exp")
    zero = delay(m, zero2, table.LATENCY, enable, f"{name}_zero")
    return normalize_scale_staged(m, approx, exponent.as_signed(), enable,
                                  name=f"{name}_norm", zero=zero)


def scale_mul(m: Module, a, b, name: str = "scale_mul"):
    """``fixed.scale_mul(a, b)``: the exact 32-bit mantissa product, renormalised.

    ``a`` and ``b`` are ``scale_layout`` values (or constants of it). Combinational (a
    multiplier, then :func:`normalize_scale`); :func:`scale_mul_staged` is the
    pipelined form. The product is a named signal of ``m`` so the normaliser does not
    copy the multiplier.
    """
    product = Signal(2 * MANTISSA_BITS, name=f"{name}_product")
    m.d.comb += product.eq(a.m * b.m)
    return normalize_scale(product, a.e + b.e)


SCALE_MUL_LATENCY = 1 + NORMALIZE_LATENCY


def scale_mul_staged(m: Module, a, b, enable, name: str = "scale_mul"):
    """``fixed.scale_mul(a, b)`` as a registered scale, :data:`SCALE_MUL_LATENCY` enabled
    cycles after ``a`` and ``b``: the multiplier into a register, then
    :func:`normalize_scale_staged`."""
    product = Signal(2 * MANTISSA_BITS, name=f"{name}_product", reset_less=True)
    exponent = Signal(signed(EXPONENT_BITS + 1), name=f"{name}_exponent", reset_less=True)
    with m.If(enable):
        m.d.sync += [product.eq(a.m * b.m), exponent.eq(a.e + b.e)]
    return normalize_scale_staged(m, product, exponent, enable, name)


APPLY_SHIFT_LATENCY = 3


def shift_control_layout(width: int, max_left: int = 31, max_right: int = 62):
    """The per-vector controls of :func:`apply_shift` for products of ``width`` bits."""
    limit = min(max_right, width + 1)
    return data.StructLayout({"right": 1, "down": range(limit), "up": range(max_left + 1)})


def shift_controls(shift, width: int, max_left: int = 31, max_right: int = 62):
    """The controls of :func:`apply_shift` for a ``shift`` (as ``fixed.shift_round``'s:
    positive right, negative left) and products of ``width`` bits, as a
    :func:`shift_control_layout` value.

    ``right`` is ``shift > 0``; ``down`` is ``shift - 1``, with ``shift`` clamped at
    ``width + 1`` (or ``max_right``, the golden model's 62), where every result is 0
    already, and 0 for a left shift; ``up`` is ``-shift`` clamped at ``max_left``. They
    depend on the shift alone: the caller forms them once a vector (or in a stage beside
    its multiplier) and registers them, so that the comparators and the decrement stay
    out of the per-lane datapath and its fan-out.
    """
    layout = shift_control_layout(width, max_left, max_right)
    limit = min(max_right, width + 1)
    right = shift > 0
    down = Mux(right, Mux(shift > limit, limit - 1, shift - 1), 0)
    up = Mux(right, 0, Mux(shift < -max_left, max_left, -shift)) if max_left else Const(0, 1)
    return layout(Cat(right, down[:layout["down"].width], up[:layout["up"].width]))


def apply_shift(m: Module, product, control, enable, name: str = "apply_shift",
                bits: int = 32):
    """``saturate(shift_round(product, shift))`` to ``bits`` bits signed, registered,
    :data:`APPLY_SHIFT_LATENCY` enabled cycles after ``product`` and ``control``
    (:func:`shift_controls` of ``shift``).

    ``fixed.scale_apply(v, s, f)`` after its multiply, for ``product = v * s.m`` and
    ``shift = -(s.e + f)``. Stages: the barrel shifters (right by ``shift - 1``, or
    left); the rounding add, ``floor((p + 2**(s-1)) / 2**s) == (floor(p / 2**(s-1)) +
    1) >> 1`` for ``s >= 1``; the saturation. A left shift applies to the whole product
    (the golden model's saturation to [-2**31, 2**31] before it only keeps its int64 in
    range: the saturated result is the same).
    """
    max_left = (1 << len(control.up)) - 1
    down = Signal(signed(len(product)), name=f"{name}_down", reset_less=True)
    right = Signal(name=f"{name}_right", reset_less=True)
    rounded = Signal(signed(len(product) + max_left), name=f"{name}_rounded", reset_less=True)
    result = Signal(signed(bits), name=f"{name}_result", reset_less=True)
    if max_left:
        up = Signal(signed(len(product) + max_left), name=f"{name}_up", reset_less=True)
        with m.If(enable):
            m.d.sync += up.eq(product << control.up)
    else:
        up = down                       # no left shifts: a zero shift leaves down = product
    with m.If(enable):
        m.d.sync += [down.eq(product >> control.down), right.eq(control.right),          # 1
                     rounded.eq(Mux(right, (down + 1) >> 1, up)),                        # 2
                     result.eq(saturate_bits(rounded, bits))]                            # 3
    return result


NORMALIZE_EVEN_LATENCY = 2


def normalize_even(m: Module, value, enable, name: str = "normalize_even"):
    """``fixed.normalize_even(value)`` for an unsigned ``value`` of any width, as (top,
    shift), registered, :data:`NORMALIZE_EVEN_LATENCY` enabled cycles after ``value``.

    ``top`` (16 bits unsigned) is ``floor(value / 2**shift)``, in [2**14, 2**16) for a
    non-zero value; ``shift`` (signed) is ``bit_length(value) - 16`` rounded up to even.
    Stages: the priority encoder (index ``j`` of the top set bit), then the barrel
    shifter: ``bit_length - 16`` rounded up to even is ``(j | 1) - 15``.
    """
    value = Value.cast(value).as_unsigned()
    index = top_index(value)
    value1 = Signal(len(value), name=f"{name}_value1", reset_less=True)
    index1 = Signal(len(index), name=f"{name}_index1", reset_less=True)
    zero1 = Signal(name=f"{name}_zero1", reset_less=True)
    top = Signal(MANTISSA_BITS, name=f"{name}_top", reset_less=True)
    shift = Signal(signed(len(index) + 2), name=f"{name}_shift", reset_less=True)
    odd = index1 | 1
    with m.If(enable):
        m.d.sync += [value1.eq(value), index1.eq(index), zero1.eq(value == 0),
                     top.eq((Cat(Const(0, MANTISSA_BITS - 1), value1) >> odd)[:MANTISSA_BITS]),
                     shift.eq(Mux(zero1, -MANTISSA_BITS, odd - (MANTISSA_BITS - 1)))]
    return top, shift


RSQRT_LATENCY = InterpolatedTable.LATENCY + NORMALIZE_LATENCY


def rsqrt(m: Module, top, shift, enable, name: str = "rsqrt"):
    """``fixed.rsqrt(top, shift)`` as a ``scale_layout`` value, :data:`RSQRT_LATENCY`
    enabled cycles later.

    ``top`` in [2**14, 2**16) and the even signed ``shift`` come from
    :func:`normalize_even`. Stages: the table (:attr:`InterpolatedTable.LATENCY`), then
    :func:`normalize_scale_staged`.
    """
    table = InterpolatedTable(name, RSQRT_TABLE)
    approx = table.add(m, (top >> 8) - 64, top[:8], enable)
    exponent = Signal(EXPONENT_BITS, name=f"{name}_exp1", reset_less=True)
    with m.If(enable):
        m.d.sync += exponent.eq(-34 - (shift >> 1))
    exponent = delay(m, exponent, table.LATENCY - 1, enable, f"{name}_exp")
    return normalize_scale_staged(m, approx, exponent.as_signed(), enable,
                                  name=f"{name}_norm")


SIGMOID_LATENCY = 1 + InterpolatedTable.LATENCY


def sigmoid(m: Module, x, enable, name: str = "sigmoid", attrs=None):
    """``fixed.sigmoid(x)`` for a signed Q.12 ``x``: Q1.15 (17 bits), registered,
    ``SIGMOID_LATENCY`` enabled cycles later; ``attrs`` go on the table's ROM.

    Cycle 0 saturates ``x`` to [-16, 16) and offsets it by 16 into the 513-entry
    table's index register (the comparators stay out of the ROM's address path); the
    table interpolates.
    """
    offset = 16 << 12
    clamped = saturate(x, -offset, offset - 1)
    # clamped is 17 bits signed in [-2**16, 2**16): adding 2**16 flips its sign bit.
    index = Signal(17, name=f"{name}_index", reset_less=True)
    with m.If(enable):
        m.d.sync += index.eq(Cat(clamped[:16], ~clamped[16]))
    return InterpolatedTable(name, SIGMOID_TABLE).add(m, index[8:], index[:8], enable, attrs)
