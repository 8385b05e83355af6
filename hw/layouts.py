"""Wire formats shared by the gateware, the host packer and the testbenches.

Each layout is defined once here; the packer (``host/packer.py``) produces bits in
exactly this layout, which a test checks against :meth:`Layout.const`.
"""

from amaranth.hdl import unsigned
from amaranth.lib import data

from .config import TileConfig

__all__ = ["weight_code_shape", "weight_word_layout"]


def weight_code_shape(tile: TileConfig):
    """One packed code: G ternary weights w_k as ``sum((w_k + 1) * 3**k)``."""
    return unsigned(tile.code_bits)


def weight_word_layout(tile: TileConfig) -> data.ArrayLayout:
    """The codes the engine consumes in one cycle: ``word[r][t]`` for row r, table t.

    Element (r, t) sits at bit offset ``(r * tables + t) * code_bits``.
    """
    return data.ArrayLayout(data.ArrayLayout(weight_code_shape(tile), tile.tables), tile.rows)
