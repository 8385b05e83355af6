"""Dense packing of ternary weights into the stream the weight buffer manager reads.

A (N, K) ternary matrix becomes codes of G weights each (``code = sum((w_k+1) * 3**k)``,
5 bits for G = 3, 4 bits for G = 2), padded with zero weights only up to the engine
tile: N to a multiple of R rows, K to a multiple of G*T columns. The codes are cut
into words of R x T codes (``hw.layouts.weight_word_layout``), ordered by column block
(K-chunk) and, within a column block, by row block, which is the order in which the
engine consumes them; the words are concatenated into one little-endian bit stream,
padded with zero bits to a whole byte at its end. See docs/packing.md.
"""

from dataclasses import dataclass

import numpy as np

from tritium.hw.config import TileConfig
from tritium.sim.golden.tlmm import ternary_codes
from .errors import ModelFormatError

__all__ = ["PackedTensor", "pack_ternary", "unpack_ternary", "word_codes"]


@dataclass(frozen=True)
class PackedTensor:
    data: bytes
    shape: tuple                # (N, K) before padding
    tile: TileConfig

    @property
    def padded_shape(self) -> tuple:
        return self.tile.padded_shape(*self.shape)

    @property
    def words(self) -> int:
        rows, cols = self.padded_shape
        return rows // self.tile.rows * cols // self.tile.k_per_word

    @property
    def bits(self) -> int:
        return self.words * self.tile.word_bits


def word_codes(weights: np.ndarray, tile: TileConfig) -> np.ndarray:
    """Codes in stream order, shape (words, R, T): the padded matrix cut into words."""
    rows, cols = tile.padded_shape(*weights.shape)
    padded = np.zeros((rows, cols), dtype=np.int64)
    padded[:weights.shape[0], :weights.shape[1]] = weights
    codes = ternary_codes(padded, tile.group)                  # (rows, cols / G)
    blocks = codes.reshape(rows // tile.rows, tile.rows, -1, tile.tables)
    return blocks.transpose(2, 0, 1, 3).reshape(-1, tile.rows, tile.tables)


def pack_ternary(weights: np.ndarray, tile: TileConfig = TileConfig()) -> PackedTensor:
    """Pack a (N, K) matrix of {-1, 0, +1} into the dense code stream."""
    weights = np.asarray(weights)
    if weights.ndim != 2:
        raise ModelFormatError(f"can only pack a 2-D weight matrix, not shape {weights.shape}")
    if np.any((weights < -1) | (weights > 1)) or not np.all(weights == np.rint(weights)):
        raise ModelFormatError("can only pack ternary weights (values in {-1, 0, 1})")
    codes = word_codes(weights.astype(np.int64), tile).reshape(-1)
    # Bit i of code j goes to stream bit j * code_bits + i (little-endian throughout).
    bits = (codes[:, None] >> np.arange(tile.code_bits)) & 1
    return PackedTensor(np.packbits(bits.reshape(-1).astype(np.uint8), bitorder="little")
                        .tobytes(), tuple(weights.shape), tile)


def unpack_ternary(packed: PackedTensor) -> np.ndarray:
    """Inverse of :func:`pack_ternary`: the (N, K) int8 matrix, padding removed."""
    tile = packed.tile
    rows, cols = packed.padded_shape
    count = packed.words * tile.rows * tile.tables
    if len(packed.data) != -(-count * tile.code_bits // 8):
        raise ModelFormatError(f"packed tensor holds {len(packed.data)} bytes, expected "
                               f"{-(-count * tile.code_bits // 8)} for shape {packed.shape}")
    bits = np.unpackbits(np.frombuffer(packed.data, dtype=np.uint8), bitorder="little")
    codes = bits[:count * tile.code_bits].reshape(count, tile.code_bits).astype(np.int64)
    codes = codes @ (1 << np.arange(tile.code_bits))
    if np.any(codes >= 3 ** tile.group):
        raise ModelFormatError(f"packed tensor holds code {codes.max()}, above the largest "
                               f"valid code {3 ** tile.group - 1}")
    blocks = codes.reshape(cols // tile.k_per_word, rows // tile.rows, tile.rows, tile.tables)
    grouped = blocks.transpose(1, 2, 0, 3).reshape(rows, cols // tile.group)
    digits = (grouped[..., None] // 3 ** np.arange(tile.group)) % 3 - 1
    return digits.reshape(rows, cols)[:packed.shape[0], :packed.shape[1]].astype(np.int8)
