"""The element-wise unit: the stream stages around the ternary linears (docs/elementwise.md).

Every component is a fixed-function stream stage with one job, bit-exact with the golden
model (docs/numerics.md): :class:`ScaleMultiply` and :class:`Dequantize` turn TLMM
accumulators into int32 Q19.12; :class:`ResidualAdd`, :class:`Gating` and :class:`RoPE`
combine and rotate those vectors; :class:`NormQuant` turns a vector into the int8 codes
and scale of the next linear's input.
"""

from .common import acc_beat_layout, gain_beat_layout, scale_pair_layout
from .scale import Dequantize, ScaleMultiply
from .pointwise import Gating, ResidualAdd
from .rope import RoPE, rope_table
from .norm import EPS_BITS, NormQuant

__all__ = ["acc_beat_layout", "gain_beat_layout", "scale_pair_layout", "ScaleMultiply",
           "Dequantize", "ResidualAdd", "Gating", "RoPE", "rope_table",
           "EPS_BITS", "NormQuant"]
