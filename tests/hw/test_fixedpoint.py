"""The fixed-point gateware helpers of ``hw/fixedpoint.py`` against the golden model's
primitives (``sim/golden/fixed.py``), exhaustively over small operand widths."""

import random
import re

import numpy as np
import pytest
from amaranth import Cat, Module, Signal
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from tritium.hw import fixedpoint, staged
from tritium.hw.fixedpoint import shift_round
from tritium.sim.golden import fixed


def _evaluate(value_shape, shift_width, build):
    """Every (value, shift) pair through the combinational ``build(value, shift)``."""
    m = Module()
    value, shift = Signal(value_shape), Signal(shift_width)
    result = Signal(len(value) + 2 if value_shape.signed else len(value) + 1)
    out = build(value, shift)
    m.d.comb += result.eq(out)
    low, high = ((-(1 << (value_shape.width - 1)), 1 << (value_shape.width - 1))
                 if value_shape.signed else (0, 1 << value_shape.width))
    seen = {}

    async def bench(ctx):
        for v in range(low, high):
            for s in range(1 << shift_width):
                ctx.set(value, v)
                ctx.set(shift, s)
                raw = ctx.get(result)
                seen[v, s] = raw
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    signed_out = out.shape().signed
    width = len(result)
    return {key: (raw - (1 << width) if signed_out and raw >> (width - 1) else raw)
            for key, raw in seen.items()}


@pytest.mark.parametrize("value_shape", [unsigned(5), signed(5), signed(4)])
@pytest.mark.parametrize("max_shift", [None, 3, 40])
def test_shift_round_matches_golden_for_every_operand(value_shape, max_shift):
    results = _evaluate(value_shape, 4, lambda v, s: shift_round(v, s, max_shift))
    for (v, s), got in results.items():
        clamped = s if max_shift is None else min(s, max_shift)
        assert got == int(fixed.shift_round(v, clamped)), (v, s, got)


def test_shift_round_adder_is_as_wide_as_its_operand():
    """The rounding constant is as wide as the largest useful shift: a 7-bit shift of
    a 16-bit value must not make a 128-bit adder (issue 16)."""
    from amaranth.back import rtlil
    m = Module()
    value, shift, result = Signal(signed(16)), Signal(7), Signal(signed(17))
    m.d.comb += result.eq(shift_round(value, shift))
    text = rtlil.convert(m, ports=[value, shift, result])
    widths = [int(re.search(r"parameter \\Y_WIDTH (\d+)", block).group(1))
              for block in text.split("cell ")[1:] if block.startswith("$add")]
    # 16-bit signed plus a 17-bit unsigned constant: 19 bits (a 128-bit one before).
    assert widths and max(widths) <= 19, widths


def _run_staged(build, shapes, samples, latency):
    """Drive ``samples`` (tuples of operand values) through ``build(m, *operands,
    enable)`` one per cycle and return the results, read ``latency`` cycles later."""
    m = Module()
    operands = [Signal(shape) for shape in shapes]
    result = build(m, *operands, 1)
    got = []

    async def bench(ctx):
        for k in range(len(samples) + latency):
            if k < len(samples):
                for signal, value in zip(operands, samples[k]):
                    ctx.set(signal, value)
            await ctx.tick()
            if k >= latency - 1 and len(got) < len(samples):
                got.append(ctx.get(result))
    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("a_shape,b_shape", [(signed(24), unsigned(32)),
                                             (signed(64), unsigned(16)),
                                             (unsigned(16), unsigned(16)),
                                             (signed(8), signed(8)),
                                             (unsigned(33), signed(40))])
def test_staged_product_is_the_exact_product(a_shape, b_shape):
    rng = random.Random(a_shape.width * 100 + b_shape.width)

    def draw(shape, count):
        low, high = ((-(1 << (shape.width - 1)), 1 << (shape.width - 1)) if shape.signed
                     else (0, 1 << shape.width))
        return [low, high - 1, 0, 1] + [rng.randrange(low, high) for _ in range(count)]
    a_values, b_values = draw(a_shape, 60), draw(b_shape, 60)
    samples = list(zip(a_values, b_values))
    latency = staged.product_latency(a_shape, b_shape)
    got = _run_staged(lambda m, a, b, en: staged.staged_product(m, a, b, en, "p"),
                      [a_shape, b_shape], samples, latency)
    assert got == [a * b for a, b in samples]


@pytest.mark.parametrize("value_shape", [unsigned(6), signed(6)])
def test_staged_round_matches_golden_for_every_operand(value_shape):
    low, high = ((-(1 << 5), 1 << 5) if value_shape.signed else (0, 1 << 6))
    samples = [(v, s) for v in range(low, high) for s in range(10)]
    got = _run_staged(lambda m, v, s, en: staged.staged_round(m, v, s, en, "r"),
                      [value_shape, unsigned(4)], samples, staged.round_latency())
    assert got == [int(fixed.shift_round(v, s)) for v, s in samples]


def test_staged_round_signed_shift_matches_golden():
    samples = [(v, s) for v in range(-32, 32) for s in range(-3, 9)]
    got = _run_staged(lambda m, v, s, en: staged.staged_round(m, v, s, en, "r", max_left=3),
                      [signed(6), signed(5)], samples, staged.round_latency())
    assert got == [int(fixed.shift_round(v, s)) for v, s in samples]


# -- The staged helpers: each against the golden model under a random enable ------------

def _staged(shapes, build, cases, latency, decode=int, seed=0):
    """``cases`` (tuples of input values) through ``build(m, *inputs, enable)`` with the
    enable low on random cycles (the inputs then change to another case, which must not
    be taken); returns the output of each case, ``latency`` enabled cycles after it."""
    m = Module()
    inputs = [Signal(shape, name=f"in{k}") for k, shape in enumerate(shapes)]
    enable = Signal()
    out = build(m, *inputs, enable)
    got = []

    async def bench(ctx):
        rng = random.Random(seed)
        pending = list(cases) + [cases[0]] * latency
        taken, before = 0, None
        while taken < len(pending):
            on = rng.random() < 0.75
            ctx.set(enable, on)
            for signal, v in zip(inputs, pending[taken] if on else rng.choice(cases)):
                ctx.set(signal, v)
            await ctx.tick()
            now = decode(ctx.get(out))
            if on:
                taken += 1
                if latency <= taken < latency + len(cases):
                    got.append(now)
            elif before is not None:
                assert now == before, "the output moved while the enable was low"
            before = now

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


def _scale(value):
    return int(value.m), int(value.e)


def _values(rng, width, count):
    """Edge cases and random values of every bit length up to ``width``."""
    edges = [0, 1, 2, 3, (1 << 16) - 1, 1 << 16, (1 << 17) - 1, (1 << 17) + 1,
             (1 << width) - 1, 1 << (width - 1), ((1 << 17) - 1) << (width - 17)]
    randoms = [int(rng.integers(1 << 62)) % (1 << int(rng.integers(1, width + 1)))
               for _ in range(count)]
    return [v for v in edges if v < 1 << width] + randoms


def test_top_index_and_saturate_bits_for_every_operand():
    m = Module()
    value, small = Signal(7), Signal(signed(7))
    index, clamped, clamped_unsigned = Signal(3), Signal(signed(4)), Signal(signed(4))
    m.d.comb += [index.eq(fixedpoint.top_index(value)),
                 clamped.eq(fixedpoint.saturate_bits(small, 4)),
                 clamped_unsigned.eq(fixedpoint.saturate_bits(value, 4))]

    async def bench(ctx):
        for v in range(1 << 7):
            ctx.set(value, v)
            ctx.set(small, v - 64)
            assert ctx.get(index) == max(v.bit_length() - 1, 0), v
            assert ctx.get(clamped) == min(max(v - 64, -8), 7), v
            assert ctx.get(clamped_unsigned) == min(v, 7), v
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_normalize_scale_staged():
    rng = np.random.default_rng(1)
    values = _values(rng, 40, 150)
    exponents = [int(e) for e in rng.integers(-200, 200, len(values))]
    cases = list(zip(values, exponents))
    got = _staged([unsigned(40), signed(10)],
                  lambda m, v, e, en: fixedpoint.normalize_scale_staged(m, v, e, en),
                  cases, fixedpoint.NORMALIZE_LATENCY, _scale)
    want = [tuple(int(x) for x in fixed.scale_from_int(v, e)) for v, e in cases]
    assert got == want


def test_reciprocal_staged():
    rng = np.random.default_rng(2)
    values = _values(rng, 48, 150) + [(1 << 15) + k for k in range(0, 1 << 15, 997)]
    got = _staged([unsigned(48)], lambda m, v, en: fixedpoint.reciprocal(m, v, en),
                  [(v,) for v in values], fixedpoint.RECIPROCAL_LATENCY, _scale)
    want = [tuple(int(x) for x in fixed.reciprocal(np.int64(v))) for v in values]
    assert got == want


def test_scale_mul_staged():
    rng = np.random.default_rng(3)
    cases = [((65535, 200), (65535, 100)), ((32768, -250), (32768, -250)),
             ((0, 0), (40000, 3)), ((65535, 5), (32769, -5))]
    for _ in range(120):
        cases.append(tuple((int(rng.integers(1 << 15, 1 << 16)), int(rng.integers(-240, 240)))
                           for _ in range(2)))
    got = _staged([fixedpoint.scale_layout] * 2,
                  lambda m, a, b, en: fixedpoint.scale_mul_staged(m, a, b, en),
                  [({"m": a[0], "e": a[1]}, {"m": b[0], "e": b[1]}) for a, b in cases],
                  fixedpoint.SCALE_MUL_LATENCY, _scale)
    want = [tuple(int(x) for x in fixed.scale_mul(a, b)) for a, b in cases]
    assert got == want


def test_apply_shift():
    """scale_apply(acc, (m, e)) from the product acc * m and the shift -e."""
    rng = np.random.default_rng(5)
    top = 2 ** 23 - 1
    cases = []
    for e in list(range(-60, 40)) + [-511, -64, -63, -62, 62, 511]:
        for _ in range(4):
            acc = int(rng.integers(-top, top + 1)) >> int(rng.integers(0, 24))
            cases.append((acc, int(rng.integers(1 << 15, 1 << 16)), e))
        cases += [(top, 65535, e), (-top - 1, 65535, e), (1, 32768, e), (-1, 32768, e)]
    got = _staged([signed(41), signed(11)],
                  lambda m, p, s, en: fixedpoint.apply_shift(
                      m, p, fixedpoint.shift_controls(s, 41), en),
                  [(a * s, -e) for a, s, e in cases], fixedpoint.APPLY_SHIFT_LATENCY)
    assert got == [int(fixed.scale_apply(a, (s, e))) for a, s, e in cases]


def test_normalize_even_staged():
    rng = np.random.default_rng(6)
    values = _values(rng, 62, 150) + [(1 << 77) - 1, 1 << 76, (1 << 76) + 12345]
    width = {}

    def build(m, value, enable):
        top, shift = fixedpoint.normalize_even(m, value, enable)
        width["shift"] = len(shift)
        return Cat(top, shift)

    def decode(raw):
        sign = 1 << (width["shift"] - 1)
        return raw & 0xFFFF, ((raw >> 16) ^ sign) - sign

    got = _staged([unsigned(77)], build, [(v,) for v in values],
                  fixedpoint.NORMALIZE_EVEN_LATENCY, decode)
    assert got == [fixed.normalize_even(v) if v else (0, -16) for v in values]
