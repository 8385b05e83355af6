"""The dense weight code stream: round trips, padding, and agreement with hw.layouts."""

import numpy as np
import pytest

from tritium.hw.config import TileConfig
from tritium.hw.layouts import weight_word_layout
from tritium.host.errors import ModelFormatError
from tritium.host.packer import PackedTensor, pack_ternary, unpack_ternary, word_codes

TILES = [TileConfig(), TileConfig(group=2, tables=3, rows=5), TileConfig(group=3, tables=1, rows=1),
         TileConfig(group=3, tables=16, rows=32)]


@pytest.mark.parametrize("tile", TILES, ids=str)
def test_round_trip_random_shapes(tile):
    rng = np.random.default_rng(tile.tables * 7 + tile.rows)
    for _ in range(10):
        weights = rng.integers(-1, 2, (rng.integers(1, 70), rng.integers(1, 90)))
        packed = pack_ternary(weights, tile)
        assert np.array_equal(unpack_ternary(packed), weights)
        assert len(packed.data) == -(-packed.bits // 8)


def test_size_is_dense_and_padded_only_to_the_tile():
    tile = TileConfig(group=3, tables=4, rows=8)
    packed = pack_ternary(np.ones((1536, 1536), dtype=np.int8), tile)
    assert packed.padded_shape == (1536, 1536)          # already a multiple of the tile
    assert packed.bits == 1536 * 1536 // 3 * 5           # 5 bits per 3 weights, no padding
    assert pack_ternary(np.zeros((9, 13)), tile).padded_shape == (16, 24)


def test_stream_matches_the_amaranth_word_layout():
    tile = TileConfig(group=3, tables=4, rows=2)
    layout = weight_word_layout(tile)
    assert layout.size == tile.word_bits
    rng = np.random.default_rng(1)
    weights = rng.integers(-1, 2, (4, 24))
    packed = pack_ternary(weights, tile)
    stream = int.from_bytes(packed.data, "little")
    for index, word in enumerate(word_codes(weights, tile)):
        const = layout.const([[int(code) for code in row] for row in word])
        bits = const.as_value().value
        assert (stream >> (index * tile.word_bits)) & ((1 << tile.word_bits) - 1) == bits


def test_rejects_non_ternary_and_bad_streams():
    with pytest.raises(ModelFormatError, match="ternary"):
        pack_ternary(np.array([[0, 2]]))
    with pytest.raises(ModelFormatError, match="ternary"):
        pack_ternary(np.array([[0.5, 0]]))
    with pytest.raises(ModelFormatError, match="2-D"):
        pack_ternary(np.zeros(3))
    packed = pack_ternary(np.zeros((8, 12)))
    with pytest.raises(ModelFormatError, match="bytes"):
        unpack_ternary(PackedTensor(packed.data[:-1], packed.shape, packed.tile))
    with pytest.raises(ModelFormatError, match="code 31"):
        unpack_ternary(PackedTensor(b"\xff" * len(packed.data), packed.shape, packed.tile))


def test_tile_config_rejects_bad_parameters():
    with pytest.raises(ValueError, match="group must be 2 or 3"):
        TileConfig(group=4)
    with pytest.raises(ValueError, match="tables must be a positive integer"):
        TileConfig(tables=0)


def test_words_go_k_chunk_outer_row_block_inner():
    tile = TileConfig(group=3, tables=2, rows=2)
    rng = np.random.default_rng(2)
    weights = rng.integers(-1, 2, (4, 12))             # 2 row blocks x 2 K-chunks
    words = word_codes(weights, tile)
    codes = (weights.reshape(4, 4, 3) + 1) @ np.array([1, 3, 9])      # (rows, groups)
    expected = [codes[0:2, 0:2], codes[2:4, 0:2], codes[0:2, 2:4], codes[2:4, 2:4]]
    assert [w.tolist() for w in words] == [e.tolist() for e in expected]
