# amaranth: UnusedElaboratable=no
"""HEAD's unit (amaranth.sim): a token's codes from the codes buffer, scored against the
head in memory, the top-k as scratchpad beats, against the golden head bit for bit."""

import random

import numpy as np
import pytest
from amaranth import Module
from amaranth.hdl import unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect, flipped

from tritium.host.compiler import decode_top
from tritium.host.head_packer import pack_head
from tritium.hw.config import AcceleratorConfig, ModelConfig, TLMMConfig
from tritium.hw.control.feeders import codes_row_beats
from tritium.hw.control.head import CodesRowReader, HeadUnit, head_unit_job_layout
from tritium.hw.layouts import code_beat_layout, vector_beat_layout
from tritium.hw.memory import SimMemory
from tritium.sim.golden.head import head_scores, head_topk, quantize_head
from tritium.sim.testing.amaranth_tb import (TRAFFIC, run_simulation, stream_receive, stream_send,
                                             watchdog)

# 4 lanes: 128-bit words of 16 codes; hidden 40 is 2.5 words (a padded last word) and
# 10 beats; vocab 37 leaves a last block of 5 rows; three tokens in the codes buffer.
CONFIG = AcceleratorConfig(
    name="head-unit-test",
    model=ModelConfig(name="head-unit-test", vocab_size=37, hidden=40, layers=1, heads=1,
                      kv_heads=1, head_dim=8, ffn=8, max_context=4),
    tlmm=TLMMConfig(group=3, tables=4, rows=4, tokens=3, max_k=48, max_n=48),
    attention_lanes=1, memory_words=2 ** 10, head_k=3)
BASE = 50


def codes_buffer(codes):
    """The codes buffer's rows as CodesWriter leaves them: token ``t``'s beats from
    ``t * codes_row_beats``, ``lanes`` int8 codes a beat, zero padding after them."""
    lanes, row = CONFIG.lanes, codes_row_beats(CONFIG)
    beats = np.zeros((CONFIG.max_tokens * row, lanes), dtype=np.int64)
    for token, vector in enumerate(codes):
        beats[token * row:token * row + len(vector) // lanes] = vector.reshape(-1, lanes)
    return [int.from_bytes(beat.astype(np.int8).tobytes(), "little") for beat in beats]


class Bench(wiring.Component):
    """The unit with the codes buffer and a memory holding the head at ``BASE``."""

    def __init__(self, init_codes, init_memory):
        self._codes, self._memory = init_codes, init_memory
        super().__init__({"job": In(stream.Signature(head_unit_job_layout(CONFIG))),
                          "beats": Out(stream.Signature(vector_beat_layout(CONFIG.lanes)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = HeadUnit(CONFIG)
        m.submodules.codes = codes = Memory(shape=unsigned(8 * CONFIG.lanes),
                                            depth=len(self._codes), init=self._codes)
        m.submodules.ram = ram = SimMemory(CONFIG.memory, len(self._memory) + 8,
                                           bytes_per_cycle=CONFIG.data_width // 12, latency=5,
                                           init=self._memory)
        port = codes.read_port()
        m.d.comb += [port.addr.eq(unit.read_addr), port.en.eq(unit.read_en),
                     unit.read_data.eq(port.data)]
        connect(m, unit.memory, ram.port)
        connect(m, flipped(self.job), unit.job)
        connect(m, unit.beats, flipped(self.beats))
        return m


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_head_unit_returns_each_tokens_top_k(traffic):
    """Jobs for tokens 2, 0 and 1 back to back, with gaps and back-pressure: each gives
    the golden top-k of that token's codes, one beat an entry (row, score low, high)."""
    rng = np.random.default_rng(11)
    qhead = quantize_head(rng.standard_normal((37, 40)))
    codes = rng.integers(-128, 128, (3, 40))
    blob = pack_head(qhead, CONFIG.data_width)
    step = CONFIG.data_width // 8
    memory = [0] * BASE + [int.from_bytes(blob[a:a + step], "little")
                           for a in range(0, len(blob), step)]
    dut = Bench(codes_buffer(codes), memory)
    order = [2, 0, 1]
    best, rows = head_topk(head_scores(qhead, codes[order]), CONFIG.head_k)
    assert (np.abs(best) >= 2 ** 31).any()          # the scores need lane 2
    got = []

    async def send(ctx):
        await stream_send(ctx, dut.job, [{"base": BASE, "token": t} for t in order],
                          random.Random(1), traffic.idle)

    async def receive(ctx):
        beats = await stream_receive(ctx, dut.beats, len(order) * CONFIG.head_k,
                                     random.Random(2), traffic.stall)
        got.extend(b"".join(int(value).to_bytes(4, "little", signed=True)
                            for value in beat.values) for beat in beats)

    run_simulation(dut, send, receive, background=[watchdog(20_000)])
    for job in range(len(order)):
        entries = b"".join(got[job * CONFIG.head_k:(job + 1) * CONFIG.head_k])
        indices, scores = decode_top(entries, CONFIG)
        assert indices.tolist() == rows[job].tolist(), f"job {job}"
        assert scores.tolist() == best[job].tolist(), f"job {job}"


@pytest.mark.parametrize("traffic", TRAFFIC[2:], ids=repr)
def test_codes_row_reader_streams_one_token_under_back_pressure(traffic):
    """Token 1's ten beats in order, ``last`` on the tenth, whatever the consumer does;
    then token 0's."""
    rng = np.random.default_rng(3)
    codes = rng.integers(-128, 128, (3, 40))
    init = codes_buffer(codes)

    class ReaderBench(wiring.Component):
        command: In(stream.Signature(range(CONFIG.max_tokens)))
        codes: Out(stream.Signature(code_beat_layout(CONFIG.lanes)))

        def elaborate(self, platform):
            m = Module()
            m.submodules.reader = reader = CodesRowReader(CONFIG)
            m.submodules.buffer = buffer = Memory(shape=unsigned(8 * CONFIG.lanes),
                                                  depth=len(init), init=init)
            port = buffer.read_port()
            m.d.comb += [port.addr.eq(reader.read_addr), port.en.eq(reader.read_en),
                         reader.read_data.eq(port.data)]
            connect(m, flipped(self.command), reader.command)
            connect(m, reader.codes, flipped(self.codes))
            return m

    dut = ReaderBench()
    got = []

    async def send(ctx):
        await stream_send(ctx, dut.command, [1, 0], random.Random(4), traffic.idle)

    async def receive(ctx):
        beats = await stream_receive(ctx, dut.codes, 20, random.Random(5), traffic.stall)
        got.extend((list(beat.codes), int(beat.last)) for beat in beats)

    run_simulation(dut, send, receive, background=[watchdog(2_000)])
    expected = [(codes[t, b * 4:b * 4 + 4].tolist(), int(b == 9)) for t in (1, 0)
                for b in range(10)]
    assert [([int(c) for c in values], last) for values, last in got] == expected
