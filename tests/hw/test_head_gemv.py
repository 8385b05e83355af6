# amaranth: UnusedElaboratable=no
"""The LM head's GEMV unit (amaranth.sim) and its memory layout against the golden head
(sim/golden/head.py), bit for bit."""

import dataclasses
import random

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from tritium.host.head_packer import head_layout, pack_head
from tritium.hw.config import (ACCELERATOR_PRESETS, AcceleratorConfig, HeadConfig, ModelConfig,
                               TLMMConfig)
from tritium.hw.head import HeadGEMV, head_job_layout, head_result_layout
from tritium.hw.head_layout import HeadLayout
from tritium.hw.layouts import code_beat_layout
from tritium.hw.memory import OnChipMemory, SimMemory
from tritium.sim.golden.head import (QuantizedHead, head_argmax, head_scores, head_topk,
                                     quantize_head)
from tritium.sim.testing.amaranth_tb import (TRAFFIC, run_simulation, stream_receive, stream_send,
                                             watchdog)

# 2 lanes: 64-bit words of 8 codes, 4 mantissas a word. hidden 44 is 5.5 words (a padded
# last word, and 22 beats of codes: a half-written last codes word); vocab 37 leaves a
# last block of one row.
SMALL = AcceleratorConfig(
    name="head-test",
    model=ModelConfig(name="head-test", vocab_size=37, hidden=44, layers=1, heads=1,
                      kv_heads=1, head_dim=4, ffn=8, max_context=4),
    tlmm=TLMMConfig(group=3, tables=2, rows=2, max_k=48, max_n=48),
    attention_lanes=1, memory_words=2 ** 10, head="host")     # the unit alone, at 2 lanes
TINY = ACCELERATOR_PRESETS["tiny"]          # 8 lanes: 256-bit words, 32 multipliers
# int4 at 2 lanes: 16 codes a word, groups of 4 (four a word; 11 a row, the last word of a
# row holds three and padding), so a block is 4 rows behind 11 mantissa words.
SMALL_INT4 = dataclasses.replace(SMALL, head_format="int4", head_group=4)
# int4 groups of 32 span two 16-code words.
WIDE_GROUPS = dataclasses.replace(
    SMALL, model=dataclasses.replace(SMALL.model, hidden=64),
    tlmm=dataclasses.replace(SMALL.tlmm, max_k=66, max_n=66), head_format="int4",
    head_group=32)
# The kv260 preset's shape of the int4 head: a 512-bit weight port (tiny's 256-bit bus
# on two ports), 128 codes a word in two groups of 64.
TINY_INT4_WIDE = dataclasses.replace(TINY, memory_ports=2, weight_port_words=2,
                                     head_format="int4")
BASE, K = 100, 4


def words_of(blob: bytes, data_width: int) -> list:
    step = data_width // 8
    return [int.from_bytes(blob[a:a + step], "little") for a in range(0, len(blob), step)]


def make_head(config, vocab, seed):
    """A random head of the design's format and three tokens: token 0 ties rows 5, 20
    and 36 at the top (identical codes and mantissas, 36 alone in the last block at 2
    lanes) and rows 9 and 10 anywhere; token 2 scores rows 0 .. 2 negative."""
    hidden, head = config.model.hidden, config.head_weights
    rng = np.random.default_rng(seed)
    qhead = quantize_head(rng.standard_normal((vocab, hidden)) * rng.uniform(0.1, 2, (vocab, 1)),
                          head)
    codes, mantissas = qhead.codes.copy(), qhead.mantissas.copy()
    tokens = rng.integers(-128, 128, (3, hidden))
    tokens[0, 0], tokens[2, 0] = -128, 127
    for row in (5, 20, 36):
        codes[row] = np.where(tokens[0] < 0, -head.code_max, head.code_max)
        mantissas[row] = 2 ** 16 - 1
    codes[10], mantissas[10] = codes[9], mantissas[9]
    codes[:3] = -np.sign(tokens[2])[None, :] * rng.integers(1, head.code_max + 1, (3, hidden))
    qhead = QuantizedHead(qhead.config, codes.astype(np.int8), mantissas, qhead.exponent)
    return qhead, tokens


def expected_results(qhead, tokens, rows_per_job, k):
    scores = head_scores(qhead, tokens)
    results = []
    for token_scores, rows in zip(scores, rows_per_job):
        if rows == 0:                   # takes its token's codes, returns nothing
            continue
        best, order = head_topk(token_scores[None, :rows], min(k, rows))
        assert order[0, 0] == head_argmax(token_scores[None, :rows])[0]
        results += [{"index": int(i), "score": int(s), "last": int(j == len(order[0]) - 1)}
                    for j, (s, i) in enumerate(zip(best[0], order[0]))]
    return results


class Bench(wiring.Component):
    """The unit on a memory; ``commands`` and ``stalls`` watch its memory port."""

    def __init__(self, config, memory, k, max_read_words=None):
        self.gemv = HeadGEMV(config, k, max_read_words)
        self.ram = memory
        super().__init__({"job": In(stream.Signature(head_job_layout(config))),
                          "codes": In(stream.Signature(code_beat_layout(config.lanes))),
                          "result": Out(stream.Signature(head_result_layout(config)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.gemv, m.submodules.ram = self.gemv, self.ram
        connect(m, self.gemv.memory, self.ram.port)
        connect(m, flipped(self.job), self.gemv.job)
        connect(m, flipped(self.codes), self.gemv.codes)
        connect(m, self.gemv.result, flipped(self.result))
        return m


def run_head(config, qhead, tokens, rows_per_job, traffic, k=K, max_read_words=None, seed=0):
    """Run one job per token on a memory holding ``qhead`` at BASE; returns the result
    entries, the read commands and the words the unit refused while streaming."""
    port = config.weight_memory
    init = [0] * BASE + words_of(pack_head(qhead, port.data_width), port.data_width)
    depth = len(init) + 8
    if traffic.idle:          # read data with gaps (5/8 of the port's rate at 2 lanes)
        memory = SimMemory(port, depth, bytes_per_cycle=port.data_width // 12,
                           latency=7, init=init)
    else:
        memory = OnChipMemory(port, depth, init=init)
    dut = Bench(config, memory, k, max_read_words)
    lanes = config.lanes
    beats = [{"codes": token[b:b + lanes].tolist(), "last": int(b + lanes == len(token))}
             for token in tokens for b in range(0, len(token), lanes)]
    jobs = [{"base": BASE, "rows": rows} for rows in rows_per_job]
    expected = expected_results(qhead, tokens, rows_per_job, k)
    got, commands, refused = [], [], []

    async def send_jobs(ctx):
        await stream_send(ctx, dut.job, jobs, random.Random(seed + 1), traffic.idle)

    async def send_codes(ctx):
        await stream_send(ctx, dut.codes, beats, random.Random(seed + 2), traffic.idle)

    async def receive(ctx):
        out = await stream_receive(ctx, dut.result, len(expected), random.Random(seed + 3),
                                   traffic.stall)
        got.extend({"index": int(e.index), "score": int(e.score), "last": int(e.last)}
                    for e in out)

    async def watch(ctx):
        port, streaming = dut.gemv.memory, False
        async for _, _, cmd_valid, cmd_ready, cmd, data_valid, data_ready in ctx.tick().sample(
                port.read_cmd.valid, port.read_cmd.ready, port.read_cmd.payload,
                port.read_data.valid, port.read_data.ready):
            if cmd_valid and cmd_ready:
                commands.append((int(cmd.addr), int(cmd.words)))
            streaming = streaming or bool(data_valid and data_ready)
            if streaming and data_valid and not data_ready:
                refused.append(1)

    run_simulation(dut, send_jobs, send_codes, receive, background=[watch, watchdog(30_000)])
    assert got == expected
    return commands, refused


@pytest.mark.parametrize("config", [SMALL, SMALL_INT4], ids=["int8", "int4"])
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_head_gemv_matches_the_golden_top_k(traffic, seed, config):
    """Three jobs back to back: the whole head (a three-way tie at the top, index order),
    its first 13 rows, and its first 3 rows with negative scores only (fewer rows than
    k: three entries); gaps on jobs, codes and read data, back-pressure on the result."""
    qhead, tokens = make_head(config, 37, seed=seed)
    scores = head_scores(qhead, tokens)
    assert scores[0, 5] == scores[0, 20] == scores[0, 36] == scores[0].max()
    assert scores[0, 9] == scores[0, 10] and (scores[2, :3] < 0).all()
    run_head(config, qhead, tokens, [37, 13, 3], traffic, seed=7 * seed)


@pytest.mark.parametrize("config", [WIDE_GROUPS, TINY_INT4_WIDE],
                         ids=["groups-span-words", "two-groups-a-512-bit-word"])
def test_head_gemv_int4_group_shapes(config):
    """int4 groups of two words (each group's word sums added before its mantissa), and
    the kv260 preset's shape (a 512-bit weight port, two groups a word), with gaps and
    back-pressure."""
    qhead, tokens = make_head(config, 37, seed=6)
    run_head(config, qhead, tokens, [37, 20, 3], TRAFFIC[3], seed=5)


@pytest.mark.parametrize("config", [SMALL, SMALL_INT4], ids=["int8", "int4"])
def test_head_gemv_streams_at_the_ports_rate_in_split_commands(config):
    """Read commands of at most 7 words tile the head's words in order (a block is 25
    words, int8, or 23, int4), and once the head streams the unit never refuses a word
    of the memory's."""
    qhead, tokens = make_head(config, 37, seed=2)
    commands, refused = run_head(config, qhead, tokens[:1], [37], TRAFFIC[0], k=2,
                                 max_read_words=7)
    layout = head_layout(qhead, config.data_width)
    assert max(words for _, words in commands) == 7
    assert [a for a, _ in commands] == list(np.cumsum([BASE] + [w for _, w in commands])[:-1])
    assert sum(words for _, words in commands) == layout.words
    assert refused == []


def test_head_gemv_argmax_only():
    """k = 1: the argmax alone, ``last`` on every entry; a job of no rows returns nothing."""
    qhead, tokens = make_head(SMALL, 37, seed=4)
    run_head(SMALL, qhead, tokens, [0, 37, 3], TRAFFIC[3], k=1, seed=3)


def test_head_gemv_eight_lanes():
    """The tiny preset's width: 32 codes a word, 16 rows a block, a short last block."""
    qhead, tokens = make_head(TINY, 37, seed=3)
    run_head(TINY, qhead, tokens[:2], [37, 30], TRAFFIC[3], k=3)


def test_head_gemv_checks_its_parameters():
    with pytest.raises(ValueError, match="positive integer k"):
        HeadGEMV(SMALL, k=0)
    with pytest.raises(ValueError, match="max_read_words"):
        HeadGEMV(SMALL, max_read_words=2 ** SMALL.memory.len_width)


# -- the layout and the packer, in Python ---------------------------------------------------

@pytest.mark.parametrize("data_width", [64, 256])
@pytest.mark.parametrize("head", [HeadConfig(), HeadConfig("int4", 4), HeadConfig("int4", 44)],
                         ids=["int8", "int4-groups-of-4", "int4-one-group"])
def test_packed_head_unpacks_to_its_codes_and_mantissas(data_width, head):
    """Reading the bytes word by word at HeadLayout's addresses recovers every code and
    mantissa (int4: two codes a byte, the even one low); padding and unused mantissa
    lanes are zero; every word is used once."""
    rng = np.random.default_rng(5)
    qhead = quantize_head(rng.standard_normal((37, 44)), head)
    blob = pack_head(qhead, data_width)
    layout = head_layout(qhead, data_width)
    width = data_width // 8
    assert len(blob) == layout.words * width
    words = np.frombuffer(blob, dtype=np.uint8).reshape(layout.words, width)
    mantissas = qhead.mantissas.reshape(37, -1)
    used = set()
    for row in range(layout.vocab):
        first = layout.row_address(row)
        span = range(first, first + layout.row_words)
        packed = words[span.start:span.stop].reshape(-1)
        if layout.code_bits == 4:
            packed = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(-1)
            codes = np.where(packed >= 8, packed.astype(int) - 16, packed)
        else:
            codes = packed.view(np.int8)
        assert (codes[:layout.hidden] == qhead.codes[row]).all()
        assert not codes[layout.hidden:].any()
        for group in range(layout.groups):
            address, lane = layout.mantissa_address(row, group)
            assert int.from_bytes(words[address, 2 * lane:2 * lane + 2].tobytes(), "little") \
                == mantissas[row, group]
            used.add(address)
        used.update(span)
    last = layout.blocks - 1
    tail = layout.rows_in_block(last) * layout.groups * 2      # bytes of the last mantissas
    mantissa_bytes = words[layout.block_address(last):][:layout.mantissa_words].reshape(-1)
    assert not mantissa_bytes[tail:].any()
    used.update(range(layout.block_address(last), layout.block_address(last)
                      + layout.mantissa_words))      # a short last block's are whole too
    assert sorted(used) == list(range(layout.words))


def test_head_layout_numbers():
    """BitNet-0.7B's head in the KV260's 256-bit words: 48 words a row, 16 rows a block;
    the packed bytes are the head's weight bytes plus the last mantissa word's padding."""
    layout = HeadLayout(32002, 1536, 256)
    assert (layout.row_words, layout.block_rows, layout.block_words) == (48, 16, 769)
    assert (layout.blocks, layout.words) == (2001, 2001 + 32002 * 48)
    assert layout.row_address(17) == 769 + 1 + 48 and layout.mantissa_address(17) == (769, 1)
    assert layout.rows_in_block(2000) == 2
    assert layout.words * 32 == HeadConfig().weight_bytes(32002, 1536) + 2 * 14
    with pytest.raises(ValueError, match="multiple of 16"):
        HeadLayout(10, 16, 24)
    with pytest.raises(ValueError, match="row"):
        layout.row_address(32002)


def test_int4_head_layout_numbers():
    """BitNet-0.7B's int4 head (groups of 64) in the kv260 preset's 512-bit words: 12
    words a row, 4 rows a block behind 3 mantissa words, the packed bytes the head's
    weight bytes but for the last block's unused lanes; BitNet-2B-4T's 40 groups a row,
    4 rows behind 5 words, no padding at all. Groups that neither divide nor span words
    are refused."""
    layout = HeadLayout(32002, 1536, 512, 4, 64)
    assert (layout.row_words, layout.groups, layout.word_groups) == (12, 24, 2)
    assert (layout.block_rows, layout.mantissa_words, layout.block_words) == (4, 3, 51)
    # The last block holds 2 rows: 48 mantissa lanes of its 96 unused (96 bytes).
    assert layout.words * 64 == HeadConfig("int4").weight_bytes(32002, 1536) + 96
    assert layout.mantissa_address(5, 23) == (51 + 1, 15)      # lane 24 + 23 of block 1
    assert layout.row_address(5) == 51 + 3 + 12
    wide = HeadLayout(128256, 2560, 512, 4, 64)
    assert (wide.block_rows, wide.mantissa_words, wide.row_words) == (4, 5, 20)
    assert wide.words * 64 == HeadConfig("int4").weight_bytes(128256, 2560)
    with pytest.raises(ValueError, match="neither divides nor spans"):
        HeadLayout(10, 96, 64, 4, 24)
    with pytest.raises(ValueError, match="must divide"):
        HeadLayout(10, 96, 64, 4, 64)


def test_an_untileable_int4_group_is_refused_by_the_config():
    """A device head's groups must tile the port's words (tiny's 64 int4 codes a word);
    on the host any group that divides the hidden size will do."""
    model = dataclasses.replace(TINY.model, hidden=96)
    with pytest.raises(ValueError, match="neither divides nor spans"):
        dataclasses.replace(TINY, model=model, head_format="int4", head_group=24)
    dataclasses.replace(TINY, model=model, head_format="int4", head_group=24, head="host")
    with pytest.raises(ValueError, match="must divide the hidden size"):
        dataclasses.replace(TINY, head_format="int4", head_group=48, head="host")
