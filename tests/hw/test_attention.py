# amaranth: UnusedElaboratable=no
"""Attention core (amaranth.sim): bit-exact against the golden attention under random traffic."""

import random

import numpy as np
import pytest

from tritium.host.compiler import rope_table_image
from tritium.hw.attention.core import AttentionCore, acc_width
from tritium.hw.attention.kvcache import KVLayout
from tritium.hw.config import AttentionConfig
from tritium.hw.memory.port import MemoryConfig
from tritium.sim.testing.amaranth_tb import TRAFFIC, run_simulation, stream_receive, stream_send
from tritium.sim.testing.attention_tb import (cache_image, fill_cache, golden_outputs, key_beats, model_shape,
                                      output_beats, qkv_beats, query_payload, random_qkv,
                                      random_scales, score_scale)
from tritium.sim.testing.harness import AttentionHarness
from tritium.sim.golden.fixed import scale_from_int
from tritium.sim.golden.model import GoldenCache, attention_step, rope_tables

CONFIGS = [
    AttentionConfig(head_dim=8, heads=4, kv_heads=2, capacity=16, lanes=3, dims_per_cycle=4),
    AttentionConfig(head_dim=6, heads=2, kv_heads=1, capacity=12, lanes=2, dims_per_cycle=6),
    AttentionConfig(head_dim=4, heads=3, kv_heads=3, capacity=8, lanes=1, dims_per_cycle=1),
    # Results narrower than the core's beats, three to a ring word (not a power of two).
    AttentionConfig(head_dim=12, heads=4, kv_heads=2, capacity=12, lanes=2, dims_per_cycle=6,
                    io_lanes=2),
]


def make_blocks(cfg, rng, cache, layer, length, count, extreme=False):
    """``count`` blocks of (position, head) queries sharing a kv head, with expectations."""
    blocks = []
    for _ in range(count):
        kv_head = int(rng.integers(cfg.kv_heads))
        used = int(rng.integers(1, cfg.lanes + 1))
        positions = rng.integers(0, length, used)
        heads = kv_head * cfg.kv_group + rng.integers(0, cfg.kv_group, used)
        if extreme:
            codes = 127 * rng.choice([-1, 1], (used, cfg.head_dim))
            scales = scale_from_int(np.full(used, 2 ** 31 - 1))
        else:
            codes = rng.integers(-127, 128, (used, cfg.head_dim))
            scales = random_scales(rng, used)
        # The golden model computes every head of each query token; take the lane's head.
        q_codes = np.zeros((used, cfg.heads, cfg.head_dim), dtype=np.int64)
        q_codes[np.arange(used), heads] = codes
        q_scale = tuple(np.repeat(s[:, None], cfg.heads, axis=1) for s in scales)
        expected = golden_outputs(cache, layer, q_codes, q_scale, positions)
        queries = [query_payload(codes[i], (scales[0][i], scales[1][i]), positions[i],
                                 i == used - 1) for i in range(used)]
        outputs = [expected[i, heads[i]] for i in range(used)]
        blocks.append((queries, key_beats(cache, cfg, layer, kv_head, int(positions.max()) + 1),
                       outputs))
    return blocks


def run_core(cfg, blocks, traffic, seed):
    dut = AttentionCore(cfg)
    step = cfg.io_lanes
    expected = [(out[b:b + step].tolist(), int(i == len(outs) - 1 and b + step == cfg.head_dim))
                for _, _, outs in blocks for i, out in enumerate(outs)
                for b in range(0, cfg.head_dim, step)]
    received = []

    async def setup_and_send_queries(ctx):
        m, e = score_scale(cfg.head_dim)
        ctx.set(dut.score_scale, {"m": int(m), "e": int(e)})
        await stream_send(ctx, dut.queries, [q for block in blocks for q in block[0]],
                          random.Random(seed), traffic.idle)

    async def send_keys(ctx):
        await stream_send(ctx, dut.keys, [k for block in blocks for k in block[1]],
                          random.Random(seed + 1), traffic.idle)

    async def receive(ctx):
        beats = await stream_receive(ctx, dut.results, len(expected), random.Random(seed + 2),
                                     traffic.stall)
        received.extend(([int(v) for v in beat.values], int(beat.last)) for beat in beats)

    # A core that deadlocks fails the comparison at the deadline instead of hanging.
    run_simulation(dut, setup_and_send_queries, send_keys, receive, deadline=1e-3)
    return received, expected


@pytest.mark.parametrize("cfg", CONFIGS,
                         ids=lambda c: f"d{c.head_dim}l{c.lanes}D{c.dims_per_cycle}io{c.io_lanes}")
@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_core_matches_golden(cfg, traffic):
    seed = 100 * cfg.head_dim + 10 * cfg.lanes + [t.name for t in TRAFFIC].index(traffic.name)
    rng = np.random.default_rng(seed)
    cache = GoldenCache(model_shape(cfg))
    fill_cache(cache, rng, 0, cfg.capacity)
    blocks = make_blocks(cfg, rng, cache, 0, cfg.capacity, 4)
    received, expected = run_core(cfg, blocks, traffic, seed)
    assert received == expected


@pytest.mark.parametrize("cfg", CONFIGS[:3], ids=lambda c: f"l{c.lanes}D{c.dims_per_cycle}")
@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_core_short_blocks_back_to_back(cfg, traffic):
    """Blocks of one or two keys, each loaded while the last keys of the block before are
    in the pipeline and finished while the next one runs: shorter than the finish, so a
    block's capture waits for the finish of the one before, and its bank is reloaded
    only once it is captured."""
    seed = 7 + 10 * cfg.lanes + [t.name for t in TRAFFIC].index(traffic.name)
    rng = np.random.default_rng(seed)
    cache = GoldenCache(model_shape(cfg))
    fill_cache(cache, rng, 0, cfg.capacity)
    blocks = make_blocks(cfg, rng, cache, 0, 2, 12)
    received, expected = run_core(cfg, blocks, traffic, seed)
    assert received == expected


def test_core_extremes():
    """Saturated scores (every code +-127 at the largest scales), an all-zero cache,
    and a single very large score among tiny ones."""
    cfg = CONFIGS[0]
    rng = np.random.default_rng(7)
    blocks = []
    cache = GoldenCache(model_shape(cfg))
    fill_cache(cache, rng, 0, cfg.capacity, extreme=True)
    blocks += make_blocks(cfg, rng, cache, 0, cfg.capacity, 2, extreme=True)
    zeros = GoldenCache(model_shape(cfg))
    blocks += make_blocks(cfg, rng, zeros, 0, cfg.capacity, 2)
    spike = GoldenCache(model_shape(cfg))
    fill_cache(spike, rng, 0, cfg.capacity)
    spike.k_scale[0][0, 5], spike.k_scale[1][0, 5] = scale_from_int(np.full(cfg.kv_heads, 2 ** 31 - 1))
    spike.k_codes[0, 5] = 127
    blocks += make_blocks(cfg, rng, spike, 0, cfg.capacity, 3, extreme=True)
    received, expected = run_core(cfg, blocks, TRAFFIC[3], 11)
    assert received == expected
    assert any(v != 0 for beat, _ in expected for v in beat)


@pytest.mark.parametrize("sign", [1, -1], ids=["positive", "negative"])
def test_core_o_at_its_bound(sign):
    """The largest ``o`` a pass can build: every key of the cache scores the same
    saturated maximum (so each weighs P = 2^15 and nothing rescales), every value code
    is 127 (or -127) at the largest scale, so ``o`` sums ``capacity`` products near
    ``2^38`` each: the ``acc_width`` bits (44 at 16 positions) hold it exactly. A word
    two bits narrower fails this test; the bound's last bit of slack is 127 against
    the 128 it assumes."""
    cfg = CONFIGS[0]
    cache = GoldenCache(model_shape(cfg))
    largest = scale_from_int(np.full((cfg.capacity, cfg.kv_heads), 2 ** 31 - 1))
    for codes, scales, value in ((cache.k_codes, cache.k_scale, 127),
                                 (cache.v_codes, cache.v_scale, 127 * sign)):
        codes[0, :cfg.capacity] = value
        scales[0][0, :cfg.capacity], scales[1][0, :cfg.capacity] = largest
    codes = np.full((1, cfg.head_dim), 127)
    q_scale = scale_from_int(np.full(1, 2 ** 31 - 1))
    q_codes = np.zeros((1, cfg.heads, cfg.head_dim), dtype=np.int64)
    q_codes[0, 0] = codes[0]
    position = cfg.capacity - 1
    expected = golden_outputs(cache, 0, q_codes,
                              tuple(np.repeat(s[:, None], cfg.heads, axis=1) for s in q_scale),
                              [position])
    block = ([query_payload(codes[0], (q_scale[0][0], q_scale[1][0]), position, True)],
             key_beats(cache, cfg, 0, 0, cfg.capacity), [expected[0, 0]])
    assert acc_width(cfg) == 44
    received, expected_beats = run_core(cfg, [block], TRAFFIC[3], 12)
    assert received == expected_beats
    assert all(sign * v > 0 for beat, _ in expected_beats for v in beat)


BLOCK_MODELS = [
    model_shape(AttentionConfig(head_dim=8, heads=4, kv_heads=2, capacity=16),
                rope_pairing="half"),
    model_shape(AttentionConfig(head_dim=8, heads=2, kv_heads=2, capacity=16),
                rope_pairing="interleaved"),
]
# Heads of 12: a core of 6 dimensions behind 2-lane vectors, three vector beats a core beat.
WIDE_HEAD_MODEL = model_shape(AttentionConfig(head_dim=12, heads=4, kv_heads=2, capacity=16,
                                              dims_per_cycle=6),
                              rope_pairing="half")


def block_jobs(model, rng, spans):
    """Jobs (layer 0) for prompt chunks and decode steps, with the golden outputs."""
    cache = GoldenCache(model)
    tables = rope_tables(model)
    jobs = []
    for start, tokens in spans:
        heads, keys, values = random_qkv(model, rng, tokens)
        positions = np.arange(start, start + tokens)
        expected = attention_step(model, tables, cache, 0, positions, heads, keys, values,
                                  score_scale(model.head_dim))
        jobs.append(({"layer": 0, "start": start, "tokens": tokens},
                     (heads, keys, values), expected))
    return jobs


async def load_image(ctx, dut, memory, address, image):
    """Store ``image`` at word ``address`` through the harness's load port."""
    ctx.set(dut.loading, 1)
    width = memory.bytes_per_word
    words = len(image) // width
    await stream_send(ctx, dut.load.write_cmd, [{"addr": address, "words": words}])
    await stream_send(ctx, dut.load.write_data, [
        int.from_bytes(image[i * width:(i + 1) * width], "little") for i in range(words)])
    await stream_receive(ctx, dut.load.write_done, 1)
    ctx.set(dut.loading, 0)


def run_block(model, cfg, jobs, traffic, seed, max_queries, rope_in_memory=False,
              key_port_words=1):
    memory = MemoryConfig(data_width=64, addr_width=12)
    dut = AttentionHarness(model, cfg, memory, max_queries=max_queries,
                           rope_in_memory=rope_in_memory, key_port_words=key_port_words)
    lanes = cfg.io_lanes
    expected = [beat for *_, out in jobs for beat in output_beats(out, lanes)]
    received = []

    async def send(ctx):
        m, e = score_scale(model.head_dim)
        ctx.set(dut.score_scale, {"m": int(m), "e": int(e)})
        if rope_in_memory:
            await load_image(ctx, dut, memory, dut.rope_base,
                             rope_table_image(model, lanes, memory.data_width))
        await stream_send(ctx, dut.job, [job for job, *_ in jobs], random.Random(seed),
                          traffic.idle)

    async def send_qkv(ctx):
        beats = [b for _, qkv, _ in jobs for b in qkv_beats(*qkv, lanes)]
        await stream_send(ctx, dut.qkv, beats, random.Random(seed + 1), traffic.idle)

    async def receive(ctx):
        beats = await stream_receive(ctx, dut.out, len(expected), random.Random(seed + 2),
                                     traffic.stall)
        received.extend({"values": [int(v) for v in b.values], "last": int(b.last)}
                        for b in beats)

    run_simulation(dut, send, send_qkv, receive)
    return received, expected


@pytest.mark.parametrize("model", BLOCK_MODELS, ids=lambda m: m.rope_pairing)
@pytest.mark.parametrize("traffic", [TRAFFIC[0], TRAFFIC[3]], ids=repr)
def test_block_prefill_then_decode(model, traffic):
    """Prompt chunks of up to max_queries tokens, then decode steps to the last position."""
    cfg = AttentionConfig.for_model(model, lanes=3, dims_per_cycle=4)
    rng = np.random.default_rng(5)
    spans = [(0, 4), (4, 3), (7, 1), (8, 1), (15, 1)]
    jobs = block_jobs(model, rng, spans)
    received, expected = run_block(model, cfg, jobs, traffic, 21, 4)
    assert received == expected


@pytest.mark.parametrize("model, lanes, dims, io_lanes", [
    (BLOCK_MODELS[0], 1, 8, 4), (BLOCK_MODELS[0], 2, 8, 2), (WIDE_HEAD_MODEL, 1, 6, 2),
    (WIDE_HEAD_MODEL, 2, 12, 2)], ids=lambda v: getattr(v, "head_dim", v))
def test_block_with_a_core_wider_than_its_vectors(model, lanes, dims, io_lanes):
    """A core of ``dims`` dimensions per cycle behind vectors of ``io_lanes``: the heads
    come in and go out in vector beats (each lane's results leave in vector beats too,
    dims / io_lanes of them a ring word: 2, 4, 3 or 6), a key takes head_dim / dims beats;
    gaps and back-pressure."""
    cfg = AttentionConfig.for_model(model, lanes=lanes, dims_per_cycle=dims, io_lanes=io_lanes)
    assert (cfg.beats_per_key, cfg.io_beats_per_head) == (model.head_dim // dims,
                                                          model.head_dim // io_lanes)
    jobs = block_jobs(model, np.random.default_rng(8), [(0, 4), (4, 2), (6, 1), (7, 1)])
    received, expected = run_block(model, cfg, jobs, TRAFFIC[3], 23, 4)
    assert received == expected


@pytest.mark.parametrize("model", BLOCK_MODELS, ids=lambda m: m.rope_pairing)
def test_block_with_the_rope_table_in_memory(model):
    """RoPE's table in memory (a design's rope_table = "memory"): each job reads its
    positions' rows into RoPE's window first, so jobs far from position 0 rotate by
    their own positions; gaps and back-pressure."""
    cfg = AttentionConfig.for_model(model, lanes=2, dims_per_cycle=4, io_lanes=2)
    jobs = block_jobs(model, np.random.default_rng(12),
                      [(0, 3), (3, 4), (7, 1), (8, 2), (10, 1), (15, 1)])
    received, expected = run_block(model, cfg, jobs, TRAFFIC[3], 31, 4, rope_in_memory=True)
    assert received == expected


@pytest.mark.parametrize("ratio", [2, 4])
def test_block_reading_the_cache_through_a_wider_port(ratio):
    """The passes read the cache through a port ``ratio`` words wide (a design's
    kv_reads = "weights"), each record padded to whole words of it (3 words of 64 bits
    become 4: two 128-bit words, or one of 256), while the records are written and
    RoPE's table read through the block's own port; the two ports share the memory
    (PortArbiter). Prompt chunks and decode steps, gaps and back-pressure."""
    model = BLOCK_MODELS[0]
    cfg = AttentionConfig.for_model(model, lanes=1, dims_per_cycle=8, io_lanes=2)
    jobs = block_jobs(model, np.random.default_rng(14),
                      [(0, 4), (4, 3), (7, 1), (8, 1), (9, 2), (15, 1)])
    received, expected = run_block(model, cfg, jobs, TRAFFIC[3], 33 + ratio, 4,
                                   rope_in_memory=True, key_port_words=ratio)
    assert received == expected


def test_a_rope_row_wider_than_the_memory_word_is_refused():
    """The table in memory holds a row per word: a beat of 4 lanes' pairs (128 bits) does
    not fit 64-bit words."""
    model = BLOCK_MODELS[0]
    cfg = AttentionConfig.for_model(model, lanes=2, dims_per_cycle=4)
    with pytest.raises(ValueError, match="a RoPE table row of 128 bits does not fit a "
                                         "64-bit memory word"):
        AttentionHarness(model, cfg, MemoryConfig(data_width=64, addr_width=12),
                         max_queries=4, rope_in_memory=True)


def test_block_with_one_query_per_job():
    """``max_queries`` 1 (a design whose token tile is 1, like ``ulx3s``): each job is one
    token, and every head's output lands in its own place."""
    model = BLOCK_MODELS[0]
    cfg = AttentionConfig.for_model(model, lanes=2, dims_per_cycle=4)
    jobs = block_jobs(model, np.random.default_rng(6), [(p, 1) for p in range(4)])
    received, expected = run_block(model, cfg, jobs, TRAFFIC[3], 22, 1)
    assert received == expected


@pytest.mark.parametrize("fields, message", [
    ({"heads": 6, "kv_heads": 4}, "multiple of kv_heads"),
    ({"head_dim": 30, "dims_per_cycle": 8}, "must divide head_dim"),
    ({"head_dim": 7, "dims_per_cycle": 7}, "even for RoPE"),
    ({"capacity": 2 ** 16 + 1}, "at most 65536"),
    ({"dims_per_cycle": 8, "io_lanes": 3}, "must be a multiple of io_lanes"),
    ({"dims_per_cycle": 6, "io_lanes": 4, "head_dim": 12}, "must be a multiple of io_lanes"),
    ({"lanes": 0}, "positive integer"),
])
def test_config_rejects(fields, message):
    with pytest.raises(ValueError, match=message):
        AttentionConfig(**fields)


def test_span_and_model_checks():
    cfg = AttentionConfig(head_dim=8, heads=4, kv_heads=2, capacity=16)
    cfg.check_span(15, 1)
    with pytest.raises(ValueError, match="exceeds the KV cache capacity of 16"):
        cfg.check_span(15, 2)
    with pytest.raises(ValueError, match="at least one token"):
        cfg.check_span(0, 0)
    with pytest.raises(ValueError, match="non-negative"):
        cfg.check_span(-1, 1)
    with pytest.raises(ValueError, match="head_dim = 16, but the attention unit is built for "
                                         "head_dim = 8"):
        cfg.check_model(model_shape(AttentionConfig(head_dim=16, heads=4, kv_heads=2)))
    with pytest.raises(ValueError, match="kv_heads = 1"):
        cfg.check_model(model_shape(AttentionConfig(head_dim=8, heads=4, kv_heads=1)))
    with pytest.raises(ValueError, match="max_queries"):
        AttentionHarness(model_shape(cfg), cfg, MemoryConfig(), max_queries=0)
    with pytest.raises(ValueError, match="beyond the 4-bit word address space"):
        AttentionHarness(model_shape(cfg), cfg, MemoryConfig(addr_width=4))


def test_block_drops_jobs_past_the_cache():
    """A job past the capacity (or of zero tokens) raises the sticky error and is dropped;
    a good job afterwards still runs bit-exact."""
    model = BLOCK_MODELS[0]
    cfg = AttentionConfig.for_model(model, lanes=3, dims_per_cycle=4)
    dut = AttentionHarness(model, cfg, MemoryConfig(data_width=64, addr_width=12), max_queries=4)
    jobs = block_jobs(model, np.random.default_rng(2), [(0, 2)])
    expected = [beat for *_, out in jobs for beat in output_beats(out, 4)]
    seen = {}

    async def bench(ctx):
        m, e = score_scale(model.head_dim)
        ctx.set(dut.score_scale, {"m": int(m), "e": int(e)})
        bad = [{"layer": 0, "start": 14, "tokens": 3}, {"layer": 0, "start": 0, "tokens": 0}]
        await stream_send(ctx, dut.job, bad)
        await ctx.tick().repeat(3)
        seen["error"] = ctx.get(dut.error)
        await stream_send(ctx, dut.job, [jobs[0][0]])
        await stream_send(ctx, dut.qkv, qkv_beats(*jobs[0][1], 4))

    async def receive(ctx):
        beats = await stream_receive(ctx, dut.out, len(expected))
        seen["out"] = [{"values": [int(v) for v in b.values], "last": int(b.last)} for b in beats]

    run_simulation(dut, bench, receive)
    assert seen["error"] == 1
    assert seen["out"] == expected


def test_decode_from_a_loaded_cache_image():
    """A cache image stored through the harness's load port (as bench/attention.py does)
    is what the block reads: decode at position 13 over 13 loaded records matches golden."""
    model = BLOCK_MODELS[0]
    cfg = AttentionConfig.for_model(model, lanes=3, dims_per_cycle=4)
    memory = MemoryConfig(data_width=64, addr_width=12)
    dut = AttentionHarness(model, cfg, memory, max_queries=4)
    rng = np.random.default_rng(9)
    cache = GoldenCache(model)
    fill_cache(cache, rng, 0, 13)
    images = cache_image(cache, KVLayout(cfg, memory), 0, 13)
    heads, keys, values = random_qkv(model, rng, 1)
    golden = attention_step(model, rope_tables(model), cache, 0, np.array([13]), heads, keys,
                            values, score_scale(model.head_dim))
    expected = output_beats(golden, 4)
    seen = {}

    async def bench(ctx):
        m, e = score_scale(model.head_dim)
        ctx.set(dut.score_scale, {"m": int(m), "e": int(e)})
        ctx.set(dut.loading, 1)
        width = memory.bytes_per_word
        for address, image in images:
            words = len(image) // width
            await stream_send(ctx, dut.load.write_cmd, [{"addr": address, "words": words}])
            await stream_send(ctx, dut.load.write_data, [
                int.from_bytes(image[i * width:(i + 1) * width], "little")
                for i in range(words)])
            await stream_receive(ctx, dut.load.write_done, 1)
        ctx.set(dut.loading, 0)
        await stream_send(ctx, dut.job, [{"layer": 0, "start": 13, "tokens": 1}])
        await stream_send(ctx, dut.qkv, qkv_beats(heads, keys, values, 4))

    async def receive(ctx):
        beats = await stream_receive(ctx, dut.out, len(expected))
        seen["out"] = [{"values": [int(v) for v in b.values], "last": int(b.last)} for b in beats]

    run_simulation(dut, bench, receive)
    assert seen["out"] == expected
