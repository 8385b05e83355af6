"""Fixed-point primitives of the hardware, bit-exact and vectorised (docs/numerics.md).

Every function here is the definition of one hardware operation. Inputs and outputs are
NumPy ``int64`` arrays unless a docstring says otherwise; widths that the hardware
uses are stated in docs/numerics.md, and each function keeps its intermediates inside
int64 for inputs within those widths.

Scale factors use a small unsigned floating-point form, a *scale*: a pair of arrays
``(m, e)`` with value ``m * 2**e``, where the mantissa ``m`` is in [2**15, 2**16) (or
0 for the value zero). One normalisation routine (:func:`scale_from_int`) makes every
scale, so products of scales round the same way in the golden model and the RTL.
"""

import numpy as np

from tritium.hw import numerics
from tritium.hw.numerics import F_ACT, INT32_MAX, INT32_MIN, MANTISSA_BITS

__all__ = [
    "F_ACT", "INT32_MIN", "INT32_MAX", "MANTISSA_BITS",
    "shift_round", "saturate", "bit_length",
    "scale_from_int", "scale_from_float", "scale_mul", "scale_apply",
    "reciprocal", "rsqrt", "exp2_neg", "sigmoid", "RECIP_TABLE", "RSQRT_TABLE",
    "EXP2_TABLE", "SIGMOID_TABLE",
]

MAX_SHIFT = 62                  # right shifts beyond this give 0 for every int64 we shift


def shift_round(value, shift):
    """``value * 2**-shift`` rounded half up (towards +inf); a negative shift is exact.

    This is the one rounding rule of the design: add half an LSB, then shift right
    arithmetically. Right shifts are clamped at 62 (the result is then 0 for every
    operand below 2**61 in magnitude). Left shifts must not overflow int64; callers
    saturate their operands first (see :func:`scale_apply`).
    """
    value = np.asarray(value, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    # Where every shift has the same sign, only that side is computed: the result is the
    # same, and large arrays (a prefill's activations) take half the passes.
    positive = shift > 0
    if positive.all():
        right = np.minimum(shift, MAX_SHIFT)
        return (value + (np.int64(1) << (right - 1))) >> right
    left = value << np.minimum(np.maximum(-shift, 0), 62)
    if not positive.any():
        return left
    right = np.minimum(np.maximum(shift, 1), MAX_SHIFT)
    return np.where(positive, (value + (np.int64(1) << (right - 1))) >> right, left)


def saturate(value, low=INT32_MIN, high=INT32_MAX):
    return np.clip(np.asarray(value, dtype=np.int64), low, high)


def bit_length(value):
    """Bits needed for a non-negative int64 (0 for 0 and below), like :meth:`int.bit_length`.

    ``frexp`` of the value in float64 gives ``e`` with ``2**(e-1) <= float(v) < 2**e``;
    the conversion rounds to nearest, so above 2**53 it can round ``v`` up to ``2**(e-1)``
    exactly, one bit too many, which the shift test takes back.
    """
    value = np.asarray(value, dtype=np.int64)
    exponent = np.frexp(value.astype(np.float64))[1].astype(np.int64)
    exponent -= (value >> np.maximum(exponent - 1, 0)) == 0
    return np.where(value > 0, exponent, 0)


def scale_from_int(value, exponent=0):
    """Normalise a non-negative integer (times ``2**exponent``) into a scale ``(m, e)``.

    ``m`` keeps the top 16 bits of ``value``, rounded half up; a carry out of the
    rounding (m = 2**16) renormalises to 2**15 with the exponent one higher.
    """
    value = np.asarray(value, dtype=np.int64)
    shift = bit_length(value) - MANTISSA_BITS
    mantissa = shift_round(value, shift)
    carry = mantissa >> MANTISSA_BITS
    mantissa = mantissa >> carry
    zero = value == 0
    return (np.where(zero, 0, mantissa),
            np.where(zero, 0, np.asarray(exponent, dtype=np.int64) + shift + carry))


def scale_from_float(value: float):
    """A host-side constant as a scale: the float64 value rounded to a 16-bit mantissa."""
    value = float(value)
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"scale must be finite and non-negative, not {value!r}")
    if value == 0:
        return np.int64(0), np.int64(0)
    exponent = int(np.floor(np.log2(value))) - (MANTISSA_BITS - 1)
    mantissa = int(np.rint(np.ldexp(value, -exponent)))
    if mantissa >= 2 ** MANTISSA_BITS:
        mantissa, exponent = mantissa >> 1, exponent + 1
    return np.int64(mantissa), np.int64(exponent)


def scale_mul(a, b):
    """Product of two scales: the exact 32-bit mantissa product, renormalised."""
    return scale_from_int(a[0] * b[0], a[1] + b[1])


def scale_apply(value, scale, frac_bits=0):
    """``round(value * scale * 2**frac_bits)`` saturated to int32.

    ``value * m`` must fit int64 (|value| < 2**47); the result is the int32 that the
    hardware's multiplier, shifter and saturation produce.
    """
    m, e = scale
    product = np.asarray(value, dtype=np.int64) * m
    shift = np.asarray(-(e + frac_bits))
    # Left shifts only happen for scales >= 1 per LSB; pre-saturating keeps them exact.
    if (shift < 0).any():
        product = np.where(shift < 0, saturate(product, -2 ** 31, 2 ** 31), product)
    return saturate(shift_round(product, np.maximum(shift, -31)))


def _interpolate(table, index, frac, frac_bits=8):
    """Linear interpolation between table[index] and table[index + 1]."""
    low = table[index]
    return low + shift_round((table[index + 1] - low) * frac, frac_bits)


# The ROM tables of docs/numerics.md (defined in tritium.hw.numerics), as int64 arrays.
RECIP_TABLE = np.array(numerics.RECIP_TABLE, dtype=np.int64)
RSQRT_TABLE = np.array(numerics.RSQRT_TABLE, dtype=np.int64)
EXP2_TABLE = np.array(numerics.EXP2_TABLE, dtype=np.int64)
SIGMOID_TABLE = np.array(numerics.SIGMOID_TABLE, dtype=np.int64)


def reciprocal(value):
    """Scale approximating ``1 / value`` for positive int64 ``value`` (0 maps to zero).

    ``value`` is truncated to its top 16 bits t in [2**15, 2**16); the table is
    indexed by t's top 8 bits and interpolated by its low 8 bits.
    """
    value = np.asarray(value, dtype=np.int64)
    length = bit_length(value)
    top = np.where(value == 0, 1 << 15, _top_bits(value, length - 16))
    approx = _interpolate(RECIP_TABLE, (top >> 8) - 128, top & 255)
    m, e = scale_from_int(approx, -22 - length)
    zero = value == 0
    return np.where(zero, 0, m), np.where(zero, 0, e)


def rsqrt(top, shift):
    """Scale approximating ``1 / sqrt(top * 2**shift)``.

    The caller normalises its (possibly wider than int64) operand to ``top`` in
    [2**14, 2**16) with an even ``shift`` (see :func:`normalize_even`).
    """
    top = np.asarray(top, dtype=np.int64)
    approx = _interpolate(RSQRT_TABLE, (top >> 8) - 64, top & 255)
    return scale_from_int(approx, -34 - np.asarray(shift, dtype=np.int64) // 2)


def normalize_even(value: int):
    """(top, shift) with ``top = floor(value / 2**shift)`` in [2**14, 2**16), shift even.

    ``value`` is a positive Python int of any width (the sum of squares in RMSNorm).
    """
    shift = value.bit_length() - 16
    shift += shift & 1
    top = value >> shift if shift >= 0 else value << -shift
    return top, shift


def _top_bits(value, shift):
    """floor(value / 2**shift) for shift >= 0, value * 2**-shift otherwise (truncation)."""
    return np.where(shift >= 0, value >> np.maximum(shift, 0), value << np.maximum(-shift, 0))


def exp2_neg(distance):
    """``2**(-distance / 256)`` as Q1.15 for distance >= 0 in Q.8 (table, then shift)."""
    distance = np.asarray(distance, dtype=np.int64)
    return shift_round(EXP2_TABLE[distance & 255], np.minimum(distance >> 8, MAX_SHIFT))


def sigmoid(x):
    """sigmoid(x / 2**12) as Q1.15; x is Q.12, saturated to [-16, 16) first."""
    x = np.clip(np.asarray(x, dtype=np.int64), -16 << F_ACT, (16 << F_ACT) - 1) + (16 << F_ACT)
    return _interpolate(SIGMOID_TABLE, x >> 8, x & 255)
