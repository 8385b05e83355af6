# amaranth: UnusedElaboratable=no
"""The LM head's GEMV unit (amaranth.sim) and its memory layout against the golden head
(sim/golden/head.py), bit for bit."""

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
BASE, K = 100, 4


def words_of(blob: bytes, data_width: int) -> list:
    step = data_width // 8
    return [int.from_bytes(blob[a:a + step], "little") for a in range(0, len(blob), step)]


def make_head(config, vocab, seed):
    """A random int8 head and three tokens: token 0 ties rows 5, 20 and 36 at the top
    (identical codes and mantissas, 36 alone in the last block) and rows 9 and 10
    anywhere; token 2 scores rows 0 .. 2 negative."""
    hidden = config.model.hidden
    rng = np.random.default_rng(seed)
    qhead = quantize_head(rng.standard_normal((vocab, hidden)) * rng.uniform(0.1, 2, (vocab, 1)))
    codes, mantissas = qhead.codes.copy(), qhead.mantissas.copy()
    tokens = rng.integers(-128, 128, (3, hidden))
    tokens[0, 0], tokens[2, 0] = -128, 127
    for row in (5, 20, 36):
        codes[row] = np.where(tokens[0] < 0, -127, 127)
        mantissas[row] = 2 ** 16 - 1
    codes[10], mantissas[10] = codes[9], mantissas[9]
    codes[:3] = -np.sign(tokens[2])[None, :] * rng.integers(1, 128, (3, hidden))
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
    init = [0] * BASE + words_of(pack_head(qhead, config.data_width), config.data_width)
    depth = len(init) + 8
    if traffic.idle:          # read data with gaps (5/8 of the port's rate at 2 lanes)
        memory = SimMemory(config.memory, depth, bytes_per_cycle=config.data_width // 12,
                           latency=7, init=init)
    else:
        memory = OnChipMemory(config.memory, depth, init=init)
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


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_head_gemv_matches_the_golden_top_k(traffic, seed):
    """Three jobs back to back: the whole head (a three-way tie at the top, index order),
    its first 13 rows, and its first 3 rows with negative scores only (fewer rows than
    k: three entries); gaps on jobs, codes and read data, back-pressure on the result."""
    qhead, tokens = make_head(SMALL, 37, seed=seed)
    scores = head_scores(qhead, tokens)
    assert scores[0, 5] == scores[0, 20] == scores[0, 36] == scores[0].max()
    assert scores[0, 9] == scores[0, 10] and (scores[2, :3] < 0).all()
    run_head(SMALL, qhead, tokens, [37, 13, 3], traffic, seed=7 * seed)


def test_head_gemv_streams_at_the_ports_rate_in_split_commands():
    """Read commands of at most 7 words tile the head's words in order (a block is 25),
    and once the head streams the unit never refuses a word of the memory's."""
    qhead, tokens = make_head(SMALL, 37, seed=2)
    commands, refused = run_head(SMALL, qhead, tokens[:1], [37], TRAFFIC[0], k=2,
                                 max_read_words=7)
    layout = head_layout(qhead, SMALL.data_width)
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
def test_packed_head_unpacks_to_its_codes_and_mantissas(data_width):
    """Reading the bytes word by word at HeadLayout's addresses recovers every code and
    mantissa; padding and unused mantissa lanes are zero; every word is used once."""
    rng = np.random.default_rng(5)
    qhead = quantize_head(rng.standard_normal((37, 44)))
    blob = pack_head(qhead, data_width)
    layout = head_layout(qhead, data_width)
    width = data_width // 8
    assert len(blob) == layout.words * width
    words = np.frombuffer(blob, dtype=np.uint8).reshape(layout.words, width)
    used = set()
    for row in range(layout.vocab):
        first = layout.row_address(row)
        span = range(first, first + layout.row_words)
        codes = words[span.start:span.stop].reshape(-1).view(np.int8)
        assert (codes[:layout.hidden] == qhead.codes[row]).all()
        assert not codes[layout.hidden:].any()
        address, lane = layout.mantissa_address(row)
        assert int.from_bytes(words[address, 2 * lane:2 * lane + 2].tobytes(), "little") \
            == qhead.mantissas[row]
        used.update(span)
    for block in range(layout.blocks):
        address = layout.block_address(block)
        assert not words[address, 2 * layout.rows_in_block(block):].any()
        used.add(address)
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


def test_pack_head_refuses_int4():
    qhead = quantize_head(np.ones((4, 64)), HeadConfig("int4", group=32))
    with pytest.raises(ValueError, match="int8"):
        pack_head(qhead, 64)
