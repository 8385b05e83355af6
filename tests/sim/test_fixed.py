"""The fixed-point primitives: rounding rules and the approximation bounds of docs/numerics.md."""

import numpy as np
import pytest

from tritium.sim.golden.fixed import (
    bit_length, exp2_neg, normalize_even, reciprocal, rsqrt, saturate, scale_apply,
    scale_from_float, scale_from_int, scale_mul, shift_round, sigmoid)


def scale_value(scale):
    return scale[0] * np.exp2(np.asarray(scale[1], dtype=np.float64))


def test_shift_round_is_half_up():
    values = np.array([-5, -3, -2, -1, 0, 1, 2, 3, 5])
    assert shift_round(values, 1).tolist() == [-2, -1, -1, 0, 0, 1, 1, 2, 3]
    assert shift_round(values, 0).tolist() == values.tolist()
    assert shift_round(values, -3).tolist() == (values * 8).tolist()
    assert shift_round(np.array([2 ** 60, -2 ** 60]), 200).tolist() == [0, 0]


def test_bit_length_matches_python():
    values = [0, 1, 2, 3, 255, 256, 2 ** 31, 2 ** 62 + 5]
    assert bit_length(np.array(values)).tolist() == [v.bit_length() for v in values]


def test_bit_length_at_every_power_of_two_and_beyond_float64():
    # Above 2**53 a value's float64 can round up to the next power of two.
    values = [(1 << k) + d for k in range(63) for d in (-1, 0, 1) if 0 <= (1 << k) + d < 2 ** 63]
    values += [2 ** 63 - 1, 2 ** 53 + 1, 2 ** 54 - 1]
    values += [int(v) for v in np.random.default_rng(4).integers(0, 2 ** 63 - 1, 2000)]
    assert bit_length(np.array(values)).tolist() == [v.bit_length() for v in values]
    assert bit_length(np.array([-1, -2 ** 40])).tolist() == [0, 0]


def test_shift_round_matches_the_rule_on_python_integers():
    rng = np.random.default_rng(5)
    values = rng.integers(-2 ** 40, 2 ** 40, 3000)
    shifts = rng.integers(-20, 70, 3000)

    def rule(value, shift):
        shift = min(int(shift), 62)
        return value << -shift if shift <= 0 else (value + (1 << (shift - 1))) >> shift

    expected = [rule(int(v), s) for v, s in zip(values, shifts)]
    assert shift_round(values, shifts).tolist() == expected                  # mixed signs
    positive = shifts > 0
    assert shift_round(values[positive], shifts[positive]).tolist() == \
        [e for e, p in zip(expected, positive) if p]                          # all right shifts
    assert shift_round(values[~positive], shifts[~positive]).tolist() == \
        [e for e, p in zip(expected, positive) if not p]                      # all left shifts
    for shift in (-3, 0, 1, 17, 62, 70):                                     # one shift for all
        assert shift_round(values, shift).tolist() == [rule(int(v), shift) for v in values]


def test_scale_from_int_is_exact_up_to_16_bits_and_rounds_above():
    for value in (1, 3, 127, 65535):
        assert scale_value(scale_from_int(np.int64(value))) == value
    m, e = scale_from_int(np.int64(2 ** 17 - 1))          # rounds up, carries
    assert (int(m), int(e)) == (2 ** 15, 2)
    assert scale_from_int(np.int64(0)) == (0, 0)


def test_scale_from_float_and_mul():
    rng = np.random.default_rng(1)
    for value in rng.uniform(1e-9, 1e9, 100):
        m, e = scale_from_float(value)
        assert 2 ** 15 <= m < 2 ** 16
        assert abs(scale_value((m, e)) / value - 1) <= 2 ** -16
    a, b = scale_from_float(3.0), scale_from_float(0.125)
    assert scale_value(scale_mul(a, b)) == 0.375
    with pytest.raises(ValueError, match="finite"):
        scale_from_float(float("nan"))


def test_scale_apply_saturates_instead_of_wrapping():
    big = scale_from_float(2.0 ** 20)
    assert scale_apply(np.array([2 ** 20, -2 ** 20, 0]), big).tolist() == \
        [2 ** 31 - 1, -2 ** 31, 0]
    assert scale_apply(np.array([7]), scale_from_float(0.5)).tolist() == [4]   # 3.5 -> 4


def test_reciprocal_error_bound():
    rng = np.random.default_rng(2)
    values = np.concatenate([np.arange(1, 5000), rng.integers(1, 2 ** 46, 100000)])
    error = np.abs(scale_value(reciprocal(values)) * values - 1)
    assert error.max() <= 6e-5
    assert reciprocal(np.int64(0)) == (0, 0)


def test_rsqrt_error_bound():
    rng = np.random.default_rng(3)
    values = [int(v) for v in rng.integers(1, 2 ** 62, 20000)] + list(range(1, 3000)) \
        + [int(v) << 20 for v in rng.integers(1, 2 ** 62, 2000)]          # wider than int64
    tops, shifts = zip(*(normalize_even(v) for v in values))
    approx = scale_value(rsqrt(np.array(tops), np.array(shifts)))
    exact = 1 / np.sqrt(np.array(values, dtype=np.float64))
    assert np.max(np.abs(approx / exact - 1)) <= 6e-5


def test_exp2_error_bound():
    distance = np.arange(256 * 24)
    error = np.abs(exp2_neg(distance) / 2 ** 15 - 2.0 ** (-distance / 256))
    assert error.max() <= 3e-5
    assert exp2_neg(np.array([0])).tolist() == [2 ** 15]


def test_sigmoid_error_bound_and_saturation():
    x = np.arange(-20 << 12, 20 << 12, 7)
    error = np.abs(sigmoid(x) / 2 ** 15 - 1 / (1 + np.exp(-x / 4096)))
    assert error.max() <= 1e-4
    assert sigmoid(np.array([-2 ** 31, 2 ** 31 - 1])).tolist() == [0, 2 ** 15]


def test_saturate_bounds():
    assert saturate(np.array([2 ** 40, -2 ** 40, 5])).tolist() == [2 ** 31 - 1, -2 ** 31, 5]
