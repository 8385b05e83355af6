# amaranth: UnusedElaboratable=no
"""Element-wise unit (amaranth.sim): bit-exact against sim/golden under random traffic."""

import random
import zlib

import numpy as np
import pytest
from amaranth import Const, Module, Signal
from amaranth.sim import Simulator

from tritium.host.model import Model
from tritium.hw import fixedpoint
from tritium.hw.config import ElementwiseConfig, ModelConfig
from tritium.hw.elementwise import (Dequantize, Gating, NormQuant, ResidualAdd, RoPE,
                                    ScaleMultiply, rope_table)
from tritium.sim.testing.amaranth_tb import TRAFFIC, stream_send
from tritium.sim.golden import fixed
from tritium.sim.golden.model import (NormGain, QuantizedModel, act_codes, ffn_activation,
                                     norm_quant, quantize_gain, rope)

INT32 = (-2 ** 31, 2 ** 31 - 1)


def seed_of(*parts) -> int:
    return zlib.crc32(repr(parts).encode()) % 100000


async def receive(ctx, port, count, rng, stall, decode, limit):
    """Take ``count`` payloads (ready low with probability ``stall``), then check silence."""
    received, cycles = [], 0
    while len(received) < count:
        ready = rng.random() >= stall
        ctx.set(port.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if ready and valid:
            received.append(decode(payload))
        cycles += 1
        assert cycles < limit, f"only {len(received)} of {count} payloads after {cycles} cycles"
    ctx.set(port.ready, 1)
    for _ in range(8):                              # nothing more comes out
        _, _, valid = await ctx.tick().sample(port.valid)
        assert not valid, "an extra payload came out"
    return received


def simulate(dut, inputs, outputs, seed):
    """Send ``inputs`` ({port: payloads}) and collect ``outputs`` ({port: (count, decode)}).

    The design is compiled once and run under every traffic pattern in turn (a reset in
    between); returns {traffic name: {port: received}}.
    """
    state = {}
    limit = 40 * max(len(p) for p in inputs.values()) + 400
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for index, (name, payloads) in enumerate(inputs.items()):
        async def send(ctx, port=getattr(dut, name), payloads=payloads, index=index):
            rng = random.Random(state["seed"] + index)
            await stream_send(ctx, port, payloads, rng, state["traffic"].idle)
        sim.add_testbench(send)
    for index, (name, (count, decode)) in enumerate(outputs.items()):
        async def collect(ctx, name=name, port=getattr(dut, name), count=count, decode=decode,
                          index=index):
            rng = random.Random(state["seed"] + 100 + index)
            state["received"][name] = await receive(ctx, port, count, rng,
                                                    state["traffic"].stall, decode, limit)
        sim.add_testbench(collect)
    results = {}
    for run, traffic in enumerate(TRAFFIC):
        state.update(traffic=traffic, seed=seed + 1000 * run, received={})
        if run:
            sim.reset()
        sim.run()
        results[traffic.name] = state["received"]
    return results


def check(results, port, expected):
    for traffic, received in results.items():
        assert received[port] == expected, f"{port} differs under {traffic} traffic"


def vector_beats(vector, lanes, key="values"):
    """Payloads of one vector, ``lanes`` elements per beat, ``last`` on the final beat."""
    beats = np.asarray(vector).reshape(-1, lanes).tolist()
    return [{key: beat, "last": int(i == len(beats) - 1)} for i, beat in enumerate(beats)]


def decode_vector(payload):
    return [int(v) for v in payload.values], int(payload.last)


def decode_scale(payload):
    return int(payload.m), int(payload.e)


def random_scales(rng, count, exponents=(-40, 20)):
    m = rng.integers(2 ** 15, 2 ** 16, count)
    e = rng.integers(*exponents, count)
    m[::7], e[::7] = 0, 0                                        # the zero scale
    return m, e


# -- ScaleMultiply --------------------------------------------------------------------

def test_scale_multiply():
    seed = seed_of("scale_mul")
    rng = np.random.default_rng(seed)
    am, ae = random_scales(rng, 120, (-240, 240))
    bm, be = random_scales(rng, 120, (-240, 240))
    am[:4], bm[:4] = [65535, 32768, 65535, 32768], [65535, 32768, 32768, 65535]   # carries
    ae[:4], be[:4] = [240, -248, 100, -100], [240, -248, -100, 100]
    expected = list(zip(*(v.tolist() for v in fixed.scale_mul((am, ae), (bm, be)))))
    assert all(-512 <= e < 512 for _, e in expected)
    operands = [{"a": {"m": int(a), "e": int(b)}, "b": {"m": int(c), "e": int(d)}}
                for a, b, c, d in zip(am, ae, bm, be)]
    dut = ScaleMultiply()
    got = simulate(dut, {"operands": operands},
                   {"product": (len(expected), decode_scale)}, seed)
    check(got, "product", expected)


# -- Dequantize -----------------------------------------------------------------------

def dequantize_case(rng, lanes, acc_width):
    top = 2 ** (acc_width - 1) - 1
    vectors, scales = [], []
    for index in range(10):
        n = lanes * int(rng.integers(1, 5))
        acc = rng.integers(-top, top + 1, n)
        m, e = random_scales(rng, 1, (-acc_width - 20, 12))
        if index == 0:
            acc[:] = top                                     # largest accumulators
            m, e = np.array([65535]), np.array([4])          # left shift: saturates
        elif index == 1:
            acc[::2], acc[1::2] = -top, 0
            m, e = np.array([40000]), np.array([-(acc_width - 2)])
        elif index == 2:
            m, e = np.array([32768]), np.array([-511])       # right shift past everything
        elif index == 3:
            m, e = np.array([65535]), np.array([511])        # left shift clamped at 31
            acc[:lanes] = [(-1) ** k for k in range(lanes)]
        elif index == 4:
            acc[:] = 0
        elif index == 5:
            m, e = np.array([0]), np.array([0])
        vectors.append(acc)
        scales.append((int(m[0]), int(e[0])))
    return vectors, scales


@pytest.mark.parametrize("lanes, acc_width", [(1, 20), (2, 24), (4, 47)])
def test_dequantize(lanes, acc_width):
    seed = seed_of("dequantize", lanes, acc_width)
    vectors, scales = dequantize_case(np.random.default_rng(seed), lanes, acc_width)
    beats = [b for v in vectors for b in vector_beats(v, lanes, "acc")]
    expected = [b for v, s in zip(vectors, scales)
                for b in vector_beats(fixed.scale_apply(v, s), lanes)]
    expected = [(b["values"], b["last"]) for b in expected]
    dut = Dequantize(lanes, acc_width)
    got = simulate(dut, {"acc": beats, "scale": [{"m": m, "e": e} for m, e in scales]},
                   {"out": (len(expected), decode_vector)}, seed)
    check(got, "out", expected)


# -- ResidualAdd and Gating -----------------------------------------------------------

def extreme_pairs(rng, lanes, count):
    """Random int32 pairs, with the int32 corners and (for gating) the sigmoid's range."""
    corners = [INT32[0], INT32[1], 0, -1, 1, (16 << 12) - 1, -(16 << 12), 16 << 12,
               -(16 << 12) - 1, 4096, -4096, 2 ** 20, -2 ** 20]
    a = rng.integers(*INT32, count * lanes, endpoint=True)
    b = rng.integers(*INT32, count * lanes, endpoint=True)
    small = rng.integers(-(20 << 12), 20 << 12, count * lanes)
    a[count * lanes // 3:] = small[count * lanes // 3:]              # near the table's range
    b[2 * count * lanes // 3:] = small[2 * count * lanes // 3:] // 7
    grid = np.array([(x, y) for x in corners for y in corners[:4]])
    a[:len(grid)], b[:len(grid)] = grid[:, 0], grid[:, 1]
    return a, b


def pairwise_case(rng, lanes, count=100):
    a, b = extreme_pairs(rng, lanes, count)
    lengths, start = [], 0
    while start < count:                                     # vectors of 1..6 beats
        lengths.append(min(int(rng.integers(1, 7)), count - start))
        start += lengths[-1]
    def beats(x):
        out, start = [], 0
        for n in lengths:
            out += vector_beats(x[start * lanes:(start + n) * lanes], lanes)
            start += n
        return out
    return a, b, beats


@pytest.mark.parametrize("lanes", [1, 4])
def test_residual_add(lanes):
    seed = seed_of("residual", lanes)
    a, b, beats = pairwise_case(np.random.default_rng(seed), lanes)
    expected = [(x["values"], x["last"]) for x in beats(fixed.saturate(a + b))]
    got = simulate(ResidualAdd(lanes), {"residual": beats(a), "update": beats(b)},
                   {"out": (len(expected), decode_vector)}, seed)
    check(got, "out", expected)


@pytest.mark.parametrize("activation, lanes", [("silu", 1), ("silu", 2), ("relu2", 1),
                                               ("relu2", 2)])
def test_gating(activation, lanes):
    seed = seed_of("gating", activation, lanes)
    gate, up, beats = pairwise_case(np.random.default_rng(seed), lanes)
    expected = [(x["values"], x["last"]) for x in beats(ffn_activation(gate, up, activation))]
    got = simulate(Gating(lanes, activation), {"gate": beats(gate), "up": beats(up)},
                   {"out": (len(expected), decode_vector)}, seed)
    check(got, "out", expected)


# -- RoPE -----------------------------------------------------------------------------

def small_model(head_dim=8, pairing="half", max_context=16, activation="silu"):
    return ModelConfig(name="small", vocab_size=16, hidden=16, layers=1, heads=2, kv_heads=1,
                       head_dim=head_dim, ffn=32, activation=activation, rope_theta=10000.0,
                       rope_pairing=pairing, max_context=max_context)


def test_rope_table_is_the_golden_table():
    cfg = small_model(head_dim=16, max_context=40)
    qmodel = QuantizedModel(Model.random(cfg))
    cos, sin = rope_table(cfg)
    assert cos == qmodel.rope_cos.tolist() and sin == qmodel.rope_sin.tolist()
    assert max(max(abs(v) for v in row) for row in cos + sin) == 2 ** 14


@pytest.mark.parametrize("pairing, lanes, head_dim", [
    ("half", 1, 8), ("half", 2, 16), ("half", 4, 8),
    ("interleaved", 1, 8), ("interleaved", 2, 16), ("interleaved", 4, 8)])
def test_rope(pairing, lanes, head_dim):
    seed = seed_of("rope", pairing, lanes, head_dim)
    rng = np.random.default_rng(seed)
    cfg = small_model(head_dim, pairing, max_context=24)
    qmodel = QuantizedModel(Model.random(cfg))
    count = 96 // head_dim + 4
    heads = rng.integers(*INT32, (count, head_dim), endpoint=True)
    heads[1::2] //= 2 ** int(rng.integers(0, 20))
    heads[0], heads[1, ::2], heads[1, 1::2] = INT32[0], INT32[1], INT32[0]
    heads[2], heads[3] = INT32[1], 0
    positions = rng.integers(0, cfg.max_context, count)
    positions[:4] = [cfg.max_context - 1, 0, 5, cfg.max_context - 1]
    rotated = [rope(h[None, None, :], np.array([p]), qmodel)[0, 0]
               for h, p in zip(heads, positions)]
    expected = [(b["values"], b["last"]) for r in rotated for b in vector_beats(r, lanes)]
    dut = RoPE(cfg, lanes)
    got = simulate(dut, {"head": [b for h in heads for b in vector_beats(h, lanes)],
                         "position": positions.tolist()},
                   {"out": (len(expected), decode_vector)}, seed)
    check(got, "out", expected)


# -- NormQuant ------------------------------------------------------------------------

def norm_vectors(rng, cfg, count=9):
    """Vectors of different lengths (a single beat, the longest) with the extreme cases."""
    lanes, top = cfg.lanes, cfg.max_features
    lengths = [lanes * int(k) for k in rng.integers(1, top // lanes + 1, count)]
    lengths[:3] = [top, lanes, top]
    vectors = []
    for index, n in enumerate(lengths):
        x = rng.integers(-2 ** 20, 2 ** 20, n) // 2 ** int(rng.integers(0, 20))
        if index == 0:
            x = rng.integers(*INT32, n, endpoint=True)
            x[:2] = INT32
        elif index == 1:
            x[:] = 0                                                 # all zero
        elif index == 2:
            x[:] = rng.integers(-3, 4, n)
            x[n // 2] = INT32[0]                                     # one huge element
        elif index == 3:
            x[:] = INT32[0]
        elif index == 5:
            x[:] = rng.integers(-2, 3, n)                           # a sum of squares near eps
            x[0] = 1
        vectors.append(x)
    return vectors


def norm_case(rng, cfg, gain):
    vectors = norm_vectors(rng, cfg)
    expected_codes, expected_scales, gains, eps = [], [], [], []
    for index, x in enumerate(vectors):
        if gain:
            g = quantize_gain(1 + 0.3 * rng.standard_normal(len(x))).values
            if index in (0, 3):
                g[:] = 32767 * (-1) ** np.arange(len(x))             # the int16 extremes
            if index == 4:
                g[:] = 0
            e = 1 if index in (1, 5) else 2 ** 32 - 1 if index == 2 else \
                int(rng.integers(1, 2 ** 24))
            codes, (m, ex) = norm_quant(x[None, :], NormGain(g, 13), e)
            gains.append(g)
            eps.append(e)
        else:
            codes, (m, ex) = act_codes(x[None, :])
        expected_codes += [(b["values"], b["last"]) for b in vector_beats(codes[0], cfg.lanes)]
        expected_scales.append((int(m[0]), int(ex[0])))
    inputs = {"values": [b for x in vectors for b in vector_beats(x, cfg.lanes)]}
    if gain:
        inputs["gains"] = [b["values"] for g in gains for b in vector_beats(g, cfg.lanes)]
        inputs["eps"] = eps
    return inputs, expected_codes, expected_scales


def decode_codes(payload):
    return [int(c) for c in payload.codes], int(payload.last)


@pytest.mark.parametrize("gain, lanes, features", [(True, 1, 24), (True, 2, 64),
                                                   (False, 1, 24), (False, 4, 64)])
def test_norm_quant(gain, lanes, features):
    seed = seed_of("norm", gain, lanes, features)
    cfg = ElementwiseConfig(lanes, features)
    inputs, codes, scales = norm_case(np.random.default_rng(seed), cfg, gain)
    got = simulate(NormQuant(cfg, gain), inputs,
                   {"codes": (len(codes), decode_codes), "scale": (len(scales), decode_scale)},
                   seed)
    check(got, "scale", scales)
    check(got, "codes", codes)


# -- Throughput and latency -----------------------------------------------------------

def transfer_cycles(dut, inputs, outputs):
    """Cycle of every transfer on each port, with inputs always offered, outputs always taken."""
    cycles = {name: [] for name in list(inputs) + list(outputs)}
    ports = {name: getattr(dut, name) for name in cycles}
    done = set()

    async def monitor(ctx):
        cycle = 0
        while True:
            sampled = await ctx.tick().sample(*(p.valid for p in ports.values()),
                                              *(p.ready for p in ports.values()))
            valids, readies = sampled[2:2 + len(ports)], sampled[2 + len(ports):]
            for name, valid, ready in zip(ports, valids, readies):
                if valid and ready:
                    cycles[name].append(cycle)
            cycle += 1

    benches = []
    for name, payloads in inputs.items():
        async def send(ctx, port=ports[name], payloads=payloads):
            await stream_send(ctx, port, payloads)
        benches.append(send)
    for name, count in outputs.items():
        async def take(ctx, name=name, port=ports[name], count=count):
            await receive(ctx, port, count, random.Random(0), 0.0, lambda p: p, 100 * count)
            done.add(name)
        benches.append(take)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert done == set(outputs)
    return cycles


def consecutive(cycles):
    return cycles == list(range(cycles[0], cycles[0] + len(cycles)))


def test_pipelines_take_and_give_one_beat_per_cycle():
    zero = {"values": [0, 0], "last": 0}
    pair = {"a": {"m": 40000, "e": 3}, "b": {"m": 50000, "e": 1}}
    cases = [
        (ScaleMultiply(), {"operands": [pair] * 20}, "product", ScaleMultiply.LATENCY),
        (Dequantize(2, 20), {"acc": [{"acc": [5, -5], "last": k % 4 == 3} for k in range(20)],
                             "scale": [{"m": 40000, "e": -4}] * 5}, "out",
         Dequantize(2, 20).latency),
        (ResidualAdd(2), {"residual": [zero] * 20, "update": [zero] * 20}, "out",
         ResidualAdd.LATENCY),
        (Gating(2, "silu"), {"gate": [zero] * 20, "up": [zero] * 20}, "out",
         Gating(2, "silu").latency),
        (Gating(2, "relu2"), {"gate": [zero] * 20, "up": [zero] * 20}, "out",
         Gating(2, "relu2").latency),
    ]
    for dut, inputs, output, latency in cases:
        first = next(iter(inputs))
        cycles = transfer_cycles(dut, inputs, {output: len(inputs[first])})
        assert consecutive(cycles[first]) and consecutive(cycles[output]), type(dut).__name__
        assert cycles[output][0] - cycles[first][0] == latency, type(dut).__name__


@pytest.mark.parametrize("pairing, lanes", [("half", 1), ("interleaved", 2)])
def test_rope_streams_heads_back_to_back(pairing, lanes):
    cfg = small_model(head_dim=8, pairing=pairing, max_context=8)
    heads = 6
    beats = [b for h in range(heads) for b in vector_beats(np.arange(8) + h, lanes)]
    cycles = transfer_cycles(RoPE(cfg, lanes), {"head": beats, "position": list(range(heads))},
                             {"out": len(beats)})
    assert consecutive(cycles["head"]) and consecutive(cycles["out"])
    assert cycles["out"][0] - cycles["head"][8 // lanes - 1] == RoPE.LATENCY


@pytest.mark.parametrize("make, inputs, latency", [
    (lambda: ResidualAdd(2), ("residual", "update"), lambda dut: dut.LATENCY),
    (lambda: Gating(2, "silu"), ("gate", "up"), lambda dut: dut.latency),
    (lambda: Gating(2, "relu2"), ("gate", "up"), lambda dut: dut.latency),
], ids=["residual", "silu", "relu2"])
def test_one_beat_into_an_idle_unit_takes_its_latency(make, inputs, latency):
    dut = make()
    beat = {"values": [1 << 12, -3 << 12], "last": 1}
    cycles = transfer_cycles(dut, {name: [beat] for name in inputs}, {"out": 1})
    assert cycles["out"][0] - cycles[inputs[0]][0] == latency(dut)


@pytest.mark.parametrize("pairing, lanes", [("half", 2), ("interleaved", 1)])
def test_one_head_into_an_idle_rope_takes_its_latency(pairing, lanes):
    cfg = small_model(head_dim=8, pairing=pairing, max_context=8)
    beats = vector_beats(np.arange(8) << 12, lanes)
    cycles = transfer_cycles(RoPE(cfg, lanes), {"head": beats, "position": [3]},
                             {"out": len(beats)})
    assert cycles["out"][0] - cycles["head"][-1] == RoPE.LATENCY


@pytest.mark.parametrize("gain", [True, False])
def test_norm_quant_streams_vectors_back_to_back(gain):
    cfg = ElementwiseConfig(2, 32)
    lengths = [16, 32, 20, 32, 16, 24]                       # 8 to 16 beats
    rng = np.random.default_rng(3)
    vectors = [rng.integers(-2 ** 20, 2 ** 20, n) for n in lengths]
    inputs = {"values": [b for x in vectors for b in vector_beats(x, 2)]}
    if gain:
        inputs["gains"] = [[1000, -1000]] * len(inputs["values"])
        inputs["eps"] = [1] * len(vectors)
    dut = NormQuant(cfg, gain)
    cycles = transfer_cycles(dut, inputs, {"codes": len(inputs["values"]), "scale": len(vectors)})
    first = lengths[0] // 2                                  # beats of the first vector
    assert consecutive(cycles["values"])                     # the input never waits
    # The second vector's codes cannot start before it has all arrived; from then on the
    # codes leave as fast as the input came.
    assert consecutive(cycles["codes"][:first]) and consecutive(cycles["codes"][first:])
    assert cycles["codes"][0] - cycles["values"][first - 1] == dut.codes_latency
    assert cycles["scale"][0] - cycles["values"][first - 1] == dut.scale_latency


@pytest.mark.parametrize("make, inputs, output, latency", [
    (ScaleMultiply, {"operands": [{"a": {"m": 40000, "e": 3}, "b": {"m": 50000, "e": 1}}]},
     "product", lambda dut: dut.LATENCY),
    (lambda: Dequantize(2, 24), {"acc": [{"acc": [5, -5], "last": 1}],
                                 "scale": [{"m": 40000, "e": -4}]}, "out",
     lambda dut: dut.latency),
    (lambda: Dequantize(1, 18), {"acc": [{"acc": [7], "last": 1}],
                                 "scale": [{"m": 40000, "e": 4}]}, "out",
     lambda dut: dut.latency),
], ids=["scale_multiply", "dequantize24", "dequantize18"])
def test_one_beat_into_an_idle_scale_unit_takes_its_latency(make, inputs, output, latency):
    dut = make()
    cycles = transfer_cycles(dut, inputs, {output: 1})
    assert cycles[output][0] - cycles[next(iter(inputs))][0] == latency(dut)


@pytest.mark.parametrize("gain", [True, False])
@pytest.mark.parametrize("beats", [1, 3])
def test_one_vector_into_an_idle_norm_quant_takes_its_latencies(gain, beats):
    dut = NormQuant(ElementwiseConfig(2, 16), gain)
    inputs = {"values": vector_beats(np.arange(2 * beats) - 3, 2)}
    if gain:
        inputs["gains"] = [[1000, -1000]] * beats
        inputs["eps"] = [1]
    cycles = transfer_cycles(dut, inputs, {"codes": beats, "scale": 1})
    assert cycles["codes"][0] - cycles["values"][-1] == dut.codes_latency
    assert cycles["scale"][0] - cycles["values"][-1] == dut.scale_latency


# -- The fixed-point helpers NormQuant adds -------------------------------------------

def test_normalize_even_and_rsqrt_over_76_bit_sums():
    rng = np.random.default_rng(11)
    values = [1, 2, 3, 2 ** 14 - 1, 2 ** 14, 2 ** 15 + 1, 2 ** 16 - 1, 2 ** 16, 2 ** 17 - 1,
              2 ** 76 - 1, 2 ** 77 - 1]
    values += [int(rng.integers(2 ** 62)) >> int(rng.integers(0, 62)) | 1 for _ in range(40)]
    values += [(int(rng.integers(2 ** 62)) << 15 | int(rng.integers(2 ** 15))) >> k
               for k in range(0, 15)]
    m = Module()
    value = Signal(77)
    top, shift = fixedpoint.normalize_even(m, value, Const(1))
    result = fixedpoint.rsqrt(m, top, shift, Const(1))

    async def bench(ctx):
        for v in values:
            ctx.set(value, v)
            await ctx.tick().repeat(fixedpoint.NORMALIZE_EVEN_LATENCY)
            want_top, want_shift = fixed.normalize_even(v)
            assert (ctx.get(top), ctx.get(shift)) == (want_top, want_shift), v
            await ctx.tick().repeat(fixedpoint.RSQRT_LATENCY)
            want = fixed.rsqrt(np.array([want_top]), np.array([want_shift]))
            assert (ctx.get(result.m), ctx.get(result.e)) == (want[0][0], want[1][0]), v

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


# -- Parameter checks -----------------------------------------------------------------

@pytest.mark.parametrize("make, match", [
    (lambda: Dequantize(0, 24), "lanes must be a positive integer"),
    (lambda: Dequantize(2, 48), "acc_width must be an integer in \\[2, 47\\]"),
    (lambda: ResidualAdd(0), "lanes must be a positive integer"),
    (lambda: Gating(2, "gelu"), "activation must be one of"),
    (lambda: RoPE(small_model(8, "half"), 3), "head_dim / 2 \\(4\\) to be a multiple of lanes"),
    (lambda: RoPE(small_model(12, "interleaved"), 3), "lanes 1 or even"),
    (lambda: RoPE(small_model(8, "interleaved"), 16), "dividing head_dim"),
    (lambda: NormQuant(ElementwiseConfig(2, 16), True, depth=1), "depth must be"),
])
def test_parameters_are_checked(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_config_types_are_rejected():
    with pytest.raises(TypeError, match="needs an ElementwiseConfig"):
        NormQuant(small_model(), True)
    with pytest.raises(TypeError, match="needs a ModelConfig"):
        RoPE(ElementwiseConfig(2, 16), 2)


def test_ports_follow_the_mode():
    with_gain = NormQuant(ElementwiseConfig(2, 16), True)
    without = NormQuant(ElementwiseConfig(2, 16), False)
    assert set(with_gain.signature.members) == {"values", "gains", "eps", "codes", "scale"}
    assert set(without.signature.members) == {"values", "codes", "scale"}
    assert RoPE(small_model(max_context=24), 2).position.payload.shape().width == 5
