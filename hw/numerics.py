"""The number formats and approximation tables of docs/numerics.md, defined once.

Plain Python (the standard library only), so the gateware (``hw/``), the golden model
(``sim/golden``), the host and the boards all take every format constant and every ROM
table from here, and the RTL and the golden model cannot drift apart. Tables are tuples
of Python ints, computed in float64 and rounded half to even, entry by entry as
docs/numerics.md gives them.
"""

import math

__all__ = ["F_ACT", "INT32_MIN", "INT32_MAX", "MANTISSA_BITS", "EXPONENT_BITS", "ROPE_FRAC",
           "F_SCORE", "GAIN_BITS", "GAIN_MAX", "RECIP_TABLE", "RSQRT_TABLE", "EXP2_TABLE",
           "SIGMOID_TABLE", "rope_angle", "rope_table"]

F_ACT = 12                      # fractional bits of activations and the residual (Q19.12)
INT32_MIN, INT32_MAX = -2 ** 31, 2 ** 31 - 1
MANTISSA_BITS = 16              # scale mantissas: 16-bit unsigned, MSB set (or 0)
EXPONENT_BITS = 10              # scale exponents: signed; 10 bits hold every scale formed
ROPE_FRAC = 14                  # the cos/sin table entries are Q1.14
F_SCORE = 8                     # attention scores are log2-domain Q.8
GAIN_BITS = 16                  # norm gains are int16
GAIN_MAX = 2 ** (GAIN_BITS - 1) - 1

# 1/x for x in [128, 256]: round(2**30 / x), 24 bits unsigned (the first entry is 2**23).
RECIP_TABLE = tuple(round(2.0 ** 30 / x) for x in range(128, 257))
# 1/sqrt(x) for x in [64, 256] in steps of 1: round(2**30 / sqrt(x)), 28 bits unsigned.
RSQRT_TABLE = tuple(round(2.0 ** 30 / math.sqrt(x)) for x in range(64, 257))
# 2**(-f/256) for f in [0, 256): round(2**15 * 2**(-f/256)), 16 bits unsigned.
EXP2_TABLE = tuple(round(2.0 ** 15 * 2.0 ** (-f / 256)) for f in range(256))
# sigmoid(x) for x = -16 + j/16, j in [0, 512]: round(2**15 * sigmoid(x)), 16 bits unsigned.
SIGMOID_TABLE = tuple(round(2.0 ** 15 / (1.0 + math.exp(16.0 - j / 16))) for j in range(513))


def rope_angle(position: int, pair: int, head_dim: int, theta: float) -> float:
    """The rotation angle of frequency ``pair`` (0 .. head_dim/2 - 1) at ``position``:
    ``position * theta ** (-2 * pair / head_dim)`` in float64."""
    return float(position) * float(theta) ** (-float(2 * pair) / head_dim)


def rope_table(max_context: int, head_dim: int, theta: float):
    """The Q1.14 cos and sin tables: ``max_context`` lists of ``head_dim / 2`` ints each,
    ``round(cos(angle) * 2**14)`` and ``round(sin(angle) * 2**14)``."""
    scale = 2.0 ** ROPE_FRAC
    cos, sin = [], []
    for position in range(max_context):
        angles = [rope_angle(position, pair, head_dim, theta) for pair in range(head_dim // 2)]
        cos.append([round(math.cos(angle) * scale) for angle in angles])
        sin.append([round(math.sin(angle) * scale) for angle in angles])
    return cos, sin
