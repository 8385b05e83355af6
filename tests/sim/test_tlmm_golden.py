"""The table-lookup form of the ternary matmul equals the plain integer matmul."""

import numpy as np
import pytest

from tritium.sim.golden.tlmm import build_tables, int_matmul, ternary_codes, tlmm_matmul


@pytest.mark.parametrize("group", [2, 3])
@pytest.mark.parametrize("mode", ["full", "half"])
def test_tlmm_equals_integer_matmul(group, mode):
    rng = np.random.default_rng(group * 10 + len(mode))
    for _ in range(20):
        tokens, k, n = rng.integers(1, 9), rng.integers(1, 200), rng.integers(1, 40)
        acts = rng.integers(-128, 128, (tokens, k))
        weights = rng.integers(-1, 2, (n, k))
        assert np.array_equal(tlmm_matmul(acts, weights, group, mode), int_matmul(acts, weights))


@pytest.mark.parametrize("group", [2, 3])
def test_tlmm_extremes(group):
    k = 96
    acts = np.full((2, k), -128)
    acts[1] = 127
    for weights in (np.ones((3, k)), -np.ones((3, k)), np.zeros((3, k))):
        for mode in ("full", "half"):
            assert np.array_equal(tlmm_matmul(acts, weights.astype(int), group, mode),
                                  int_matmul(acts, weights))


def test_half_table_is_the_upper_half():
    acts = np.arange(-4, 2).reshape(1, 6)
    full, half = build_tables(acts, 3, "full"), build_tables(acts, 3, "half")
    assert half.shape == (1, 2, 14)
    assert np.array_equal(half, full[..., 13:])
    assert np.array_equal(full[..., :13], -full[..., 26:13:-1])     # T[c] = -T[26 - c]


def test_codes_cover_every_pattern():
    weights = np.array([[-1, -1, -1, 1, 1, 1, 0, 0, 0, 1]])
    assert ternary_codes(weights, 3).tolist() == [[0, 26, 13, 1 * 1 + 3 + 9 * 1 + 1]]


def test_bad_table_mode():
    with pytest.raises(ValueError, match="table mode"):
        build_tables(np.zeros((1, 3)), 3, "quarter")
