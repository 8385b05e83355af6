"""Arithmetic spread over register stages, so no path carries more than one multiplier,
one wide carry chain or one barrel shifter (docs/timing.md).

Every function here adds its registers to a module under an ``enable`` (the advance
of the caller's pipeline) and states its latency in enabled cycles; its results are
bit-identical to the one-cycle expression it replaces. The registers hold data only,
so they are reset-less (the caller's valid bits say when they mean something).
"""

from amaranth import Module, Mux, Signal
from amaranth.hdl import signed, unsigned

__all__ = ["DSP_BITS", "product_latency", "staged_product", "round_latency", "staged_round"]

# A multiplier block's operands: ECP5's MULT18X18D and the 27 x 18 of a DSP48E2 both
# take 18-bit signed operands, so a chunk is 17 bits unsigned or 18 bits signed.
DSP_BITS = 18


def _chunks(shape):
    """Split an operand of ``shape`` into (offset, width, signed) chunks that each fit
    one multiplier port: 17-bit unsigned chunks, the top one keeping the sign."""
    width, is_signed = shape.width, shape.signed
    chunks, offset = [], 0
    while True:
        rest = width - offset
        if (is_signed and rest <= DSP_BITS) or (not is_signed and rest <= DSP_BITS - 1):
            chunks.append((offset, rest, is_signed))
            return chunks
        chunks.append((offset, DSP_BITS - 1, False))
        offset += DSP_BITS - 1


def product_latency(a_shape, b_shape) -> int:
    """Enabled cycles :func:`staged_product` takes for these operand shapes: one for the
    partial products, one per level of the adder tree that sums them."""
    partials = len(_chunks(a_shape)) * len(_chunks(b_shape))
    return 1 + (partials - 1).bit_length()


def staged_product(m: Module, a, b, enable, name: str):
    """``a * b`` registered, :func:`product_latency` enabled cycles later.

    The operands are cut into chunks that each fit one multiplier block; the partial
    products are registered straight out of their multipliers, then summed one adder
    level per stage. The result has the exact product's width and signedness."""
    a_chunks, b_chunks = _chunks(a.shape()), _chunks(b.shape())
    partials = []
    for a_off, a_width, a_signed in a_chunks:
        a_part = a[a_off:a_off + a_width]
        a_part = a_part.as_signed() if a_signed else a_part
        for b_off, b_width, b_signed in b_chunks:
            b_part = b[b_off:b_off + b_width]
            b_part = b_part.as_signed() if b_signed else b_part
            held = Signal(signed(a_width + b_width + 1) if a_signed or b_signed
                          else unsigned(a_width + b_width),
                          name=f"{name}_p{len(partials)}", reset_less=True)
            with m.If(enable):
                m.d.sync += held.eq(a_part * b_part)
            partials.append((a_off + b_off, held))
    full = signed(len(a) + len(b)) if a.shape().signed or b.shape().signed \
        else unsigned(len(a) + len(b))
    level = 0
    while len(partials) > 1:
        level += 1
        paired = []
        for k in range(0, len(partials) - 1, 2):
            (low_off, low), (high_off, high) = partials[k], partials[k + 1]
            base = min(low_off, high_off)
            held = Signal(full, name=f"{name}_s{level}_{k // 2}", reset_less=True)
            with m.If(enable):
                m.d.sync += held.eq((low << (low_off - base)) + (high << (high_off - base)))
            paired.append((base, held))
        if len(partials) % 2:
            offset, odd = partials[-1]
            held = Signal(full, name=f"{name}_s{level}_{len(partials) // 2}", reset_less=True)
            with m.If(enable):
                m.d.sync += held.eq(odd)
            paired.append((offset, held))
        partials = paired
    offset, result = partials[0]
    assert offset == 0
    if len(result) != full.width or result.shape() != full:
        held = Signal(full, name=f"{name}_product")
        m.d.comb += held.eq(result)
        result = held
    return result


def round_latency() -> int:
    """Enabled cycles :func:`staged_round` takes: the shift amount decoded, the shift,
    the rounding add."""
    return 3


def staged_round(m: Module, value, shift, enable, name: str, *, max_left: int = 0,
                 max_right: int = None):
    """``fixed.shift_round(value, shift)`` registered, :func:`round_latency` enabled
    cycles later.

    ``floor((v + 2**(s-1)) / 2**s) == floor((floor(v / 2**(s-1)) + 1) / 2)`` for
    ``s >= 1``, so the shift amount's decoding (its clamp, decrement or negation, side
    by side), the barrel shifter (by ``s - 1``) and the rounding adder sit in separate
    stages. ``shift`` is unsigned, or signed with left shifts of up to ``max_left`` bits
    (exact, no rounding). Right shifts are clamped at ``max_right`` (default: one past
    the operand, where every result is already 0 or -1 + 1 = 0). The result has the
    signedness of ``value`` and ``max_left + 1`` more bits.
    """
    width = len(value)
    limit = min(max_right if max_right is not None else width + 1, width + 1)
    out_shape = signed(width + max_left + 1) if value.shape().signed \
        else unsigned(width + max_left + 1)
    # Stage 1: which way, and by how much (a right shift by s - 1 keeps the rounding bit).
    is_signed = shift.shape().signed
    negative = shift[-1] if is_signed else 0
    right = Signal(name=f"{name}_right", reset_less=True)
    right_by = Signal(range(limit), name=f"{name}_right_by", reset_less=True)
    left_by = Signal(range(max_left + 1), name=f"{name}_left_by", reset_less=True)
    held = Signal.like(value, name=f"{name}_value", reset_less=True)
    with m.If(enable):
        m.d.sync += [right.eq(~negative & (shift != 0)),
                     right_by.eq(Mux(shift > limit, limit - 1, shift - 1)),
                     held.eq(value)]
        if max_left:
            m.d.sync += left_by.eq(Mux(negative, -shift, 0))
    # Stage 2: the shift. Stage 3: add the rounding bit and drop it.
    halfway = Signal(out_shape, name=f"{name}_halfway", reset_less=True)
    rounds = Signal(name=f"{name}_rounds", reset_less=True)
    result = Signal(out_shape, name=f"{name}_rounded", reset_less=True)
    with m.If(enable):
        m.d.sync += [halfway.eq(Mux(right, held >> right_by, held << left_by)),
                     rounds.eq(right),
                     result.eq(Mux(rounds, (halfway + 1) >> 1, halfway))]
    return result
