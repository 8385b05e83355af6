# amaranth: UnusedElaboratable=no
"""Controller parts (amaranth.sim): vector reader/writer, codes buffer, gain feeder and
gain buffer."""

import dataclasses
import random
import zlib

import numpy as np
import pytest
from amaranth import Module
from amaranth.hdl import unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.hw.control.embed import EmbedFetcher, HalfWordWidener
from tritium.hw.control.feeders import (CodesFeeder, CodesWriter, GainBuffer, GainFeeder,
                                       codes_row_beats)
from tritium.hw.control.vectors import VectorReader, VectorWriter, vector_command_layout
from tritium.hw.elementwise.common import gain_beat_layout
from tritium.hw.layouts import act_beat_layout, code_beat_layout, vector_beat_layout
from tritium.hw.memory import OnChipMemory
from tritium.sim.testing.amaranth_tb import (TRAFFIC, run_simulation, stream_receive, stream_send,
                                             watchdog)

LANES, DEPTH, TOKENS = 4, 64, 3
TINY = ACCELERATOR_PRESETS["tiny"]


class Copier(wiring.Component):
    """A reader and a writer on two memories: what the reader reads, the writer writes."""

    def __init__(self, init):
        self._init = init
        layout = vector_command_layout(DEPTH, TOKENS)
        super().__init__({"read": In(stream.Signature(layout)),
                          "write": In(stream.Signature(layout)),
                          "beats": Out(stream.Signature(vector_beat_layout(LANES))),
                          "store": In(stream.Signature(vector_beat_layout(LANES))),
                          "idle": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.source = source = Memory(shape=unsigned(32 * LANES), depth=DEPTH,
                                              init=self._init)
        m.submodules.target = self.target = Memory(shape=unsigned(32 * LANES), depth=DEPTH,
                                                   init=[])
        m.submodules.reader = reader = VectorReader(LANES, DEPTH, TOKENS)
        m.submodules.writer = writer = VectorWriter(LANES, DEPTH, TOKENS)
        read, write = source.read_port(), self.target.write_port()
        m.d.comb += [read.addr.eq(reader.read_addr), read.en.eq(reader.read_en),
                     reader.read_data.eq(read.data), write.addr.eq(writer.write_addr),
                     write.data.eq(writer.write_data), write.en.eq(writer.write_en),
                     self.idle.eq(writer.idle)]
        wiring.connect(m, wiring.flipped(self.read), reader.command)
        wiring.connect(m, wiring.flipped(self.write), writer.command)
        wiring.connect(m, reader.beats, wiring.flipped(self.beats))
        wiring.connect(m, wiring.flipped(self.store), writer.beats)
        return m


def words_of(values):
    """int32 lanes of one beat as the memory word."""
    return sum((int(v) & 0xFFFFFFFF) << (32 * i) for i, v in enumerate(values))


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_vector_readernd_writer(traffic):
    """Strided token vectors come out in order with ``last`` per token, and a writer
    puts beats back at another stride; random gaps and back-pressure."""
    rng = np.random.default_rng(1)
    contents = rng.integers(-2 ** 31, 2 ** 31, (DEPTH, LANES))
    dut = Copier([words_of(row) for row in contents])
    base, stride, beats, tokens = 5, 9, 4, 3
    expected = [{"values": contents[base + t * stride + b].tolist(), "last": int(b == beats - 1)}
                for t in range(tokens) for b in range(beats)]
    got, stored = [], {}

    async def command(ctx):
        await stream_send(ctx, dut.read, [{"base": base, "stride": stride, "beats": beats,
                                           "tokens": tokens}])
        await stream_send(ctx, dut.write, [{"base": 40, "stride": 5, "beats": beats,
                                            "tokens": tokens}])
        await stream_send(ctx, dut.store, expected, random.Random(3), traffic.idle)
        await ctx.tick().until(dut.idle)
        for t in range(tokens):
            for b in range(beats):
                stored[(t, b)] = ctx.get(dut.target.data[40 + 5 * t + b])

    async def receive(ctx):
        beats_out = await stream_receive(ctx, dut.beats, len(expected), random.Random(2),
                                         traffic.stall)
        got.extend({"values": [int(v) for v in b.values], "last": int(b.last)} for b in beats_out)

    run_simulation(dut, command, receive)
    assert got == expected
    assert all(stored[(t, b)] == words_of(expected[t * beats + b]["values"])
               for t in range(tokens) for b in range(beats))


class CodesPath(wiring.Component):
    """CodesWriter -> codes buffer -> CodesFeeder, as the controller wires them."""

    def __init__(self, config):
        self._config = config
        super().__init__({
            "codes": In(stream.Signature(code_beat_layout(config.lanes))),
            "scale": In(stream.Signature(CodesWriter(config).scale.payload.shape())),
            "feed": In(stream.Signature(CodesFeeder(config).command.payload.shape())),
            "acts": Out(stream.Signature(act_beat_layout(config.tlmm))),
            "done": Out(range(config.max_tokens + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        m.submodules.buffer = buffer = Memory(shape=unsigned(8 * cfg.lanes),
                                              depth=cfg.max_tokens * codes_row_beats(cfg),
                                              init=[])
        m.submodules.writer = writer = CodesWriter(cfg)
        m.submodules.feeder = feeder = CodesFeeder(cfg)
        write, read = buffer.write_port(), buffer.read_port()
        m.d.comb += [write.addr.eq(writer.write_addr), write.data.eq(writer.write_data),
                     write.en.eq(writer.write_en), read.addr.eq(feeder.read_addr),
                     read.en.eq(feeder.read_en), feeder.read_data.eq(read.data),
                     self.done.eq(writer.done)]
        wiring.connect(m, wiring.flipped(self.codes), writer.codes)
        wiring.connect(m, wiring.flipped(self.scale), writer.scale)
        wiring.connect(m, wiring.flipped(self.feed), feeder.command)
        wiring.connect(m, feeder.acts, wiring.flipped(self.acts))
        return m


# A chunk of one beat (G2 T4 at 8 lanes): an activation beat is read every cycle.
ONE_BEAT_CHUNKS = dataclasses.replace(
    TINY, name="one-beat-chunks", tlmm=dataclasses.replace(TINY.tlmm, group=2, tables=4))


@pytest.mark.parametrize("cfg", [TINY, ONE_BEAT_CHUNKS], ids=lambda c: c.name)
@pytest.mark.parametrize("traffic", [TRAFFIC[0], TRAFFIC[3]], ids=repr)
def test_codes_are_padded_and_fed_chunk_by_chunk(traffic, cfg):
    """Each token's codes (17 beats, not whole chunks) come back as activation beats in
    (chunk, token) order, zero past the vector's end; with chunks of three beats (the
    tiny preset) and of one."""
    lanes, per_chunk = cfg.lanes, cfg.tlmm.k_per_word
    features, tokens = 17 * lanes, 3
    chunks = -(-features // per_chunk)
    rng = np.random.default_rng(4)
    codes = np.zeros((tokens, chunks * per_chunk), dtype=np.int64)
    codes[:, :features] = rng.integers(-128, 128, (tokens, features))
    beats = [{"codes": codes[t, b * lanes:(b + 1) * lanes].tolist(),
              "last": int(b == features // lanes - 1)}
             for t in range(tokens) for b in range(features // lanes)]
    expected = [codes[t, c * per_chunk:(c + 1) * per_chunk].tolist()
                for c in range(chunks) for t in range(tokens)]
    dut = CodesPath(cfg)
    got = []

    async def write(ctx):
        await stream_send(ctx, dut.scale, [{"m": 1 << 15, "e": t} for t in range(tokens)])
        await stream_send(ctx, dut.codes, beats, random.Random(5), traffic.idle)
        await ctx.tick().until(dut.done == tokens)
        await stream_send(ctx, dut.feed, [{"chunks": chunks, "tokens": tokens}])

    async def receive(ctx):
        acts = await stream_receive(ctx, dut.acts, len(expected), random.Random(6), traffic.stall)
        got.extend([int(v) for v in a] for a in acts)

    run_simulation(dut, write, receive, background=[watchdog(5_000)])
    assert got == expected


def test_gain_feeder_replays_gains_per_token():
    """Gains of an odd number of beats, twice (two tokens), from words of two beats."""
    cfg = TINY
    lanes = cfg.lanes
    beats, tokens, address = 5, 2, 7
    rng = np.random.default_rng(8)
    gains = rng.integers(-32767, 32768, beats * lanes)
    padded = np.zeros(2 * lanes * 3, dtype=np.int64)
    padded[:beats * lanes] = gains
    words = [sum((int(g) & 0xFFFF) << (16 * i) for i, g in enumerate(padded[w * 2 * lanes:
                                                                           (w + 1) * 2 * lanes]))
             for w in range(3)]
    init = [0] * address + words

    class Bench(wiring.Component):
        command: In(stream.Signature(GainFeeder(cfg).command.payload.shape()))
        gains: Out(stream.Signature(gain_beat_layout(lanes)))

        def elaborate(self, platform):
            m = Module()
            m.submodules.memory = memory = OnChipMemory(cfg.memory, 16, init=init)
            m.submodules.feeder = feeder = GainFeeder(cfg)
            wiring.connect(m, feeder.memory, memory.port)
            wiring.connect(m, wiring.flipped(self.command), feeder.command)
            wiring.connect(m, feeder.gains, wiring.flipped(self.gains))
            return m

    dut = Bench()
    expected = [gains[b * lanes:(b + 1) * lanes].tolist() for _ in range(tokens)
                for b in range(beats)]
    got = []

    async def command(ctx):
        await stream_send(ctx, dut.command, [{"address": address, "beats": beats,
                                              "tokens": tokens}])

    async def receive(ctx):
        out = await stream_receive(ctx, dut.gains, len(expected), random.Random(1), 0.3)
        got.extend([int(v) for v in g] for g in out)

    run_simulation(dut, command, receive)
    assert got == expected


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_gain_buffer_holds_a_vector_and_replays_it_per_token(traffic):
    """Two vectors one after the other (5 beats for 3 tokens, then 2 for 1): each is
    filled beat by beat, ``filled`` once its last beat is in and not before, then handed
    out once per token in order; nothing leaves before the vector is filled."""
    cfg = TINY
    rng = random.Random(zlib.crc32(repr(traffic).encode()))
    dut = GainBuffer(cfg)
    vectors = [(5, 3), (2, 1)]
    values = np.random.default_rng(4).integers(-32767, 32768, (sum(b for b, _ in vectors),
                                                                cfg.lanes))
    got, early = [], []

    async def bench(ctx):
        offset = 0
        for beats, tokens in vectors:
            ctx.set(dut.start, 1)
            ctx.set(dut.beats, beats)
            ctx.set(dut.tokens, tokens)
            await ctx.tick()
            ctx.set(dut.start, 0)
            vector = values[offset:offset + beats]
            offset += beats
            for index, beat in enumerate(vector):
                assert not ctx.get(dut.filled)
                await stream_send(ctx, dut.fill, [[int(v) for v in beat]], rng, traffic.idle)
                early.append(ctx.get(dut.gains.valid))
            ctx.set(dut.fill.valid, 0)
            await ctx.tick()
            assert ctx.get(dut.filled)
            out = await stream_receive(ctx, dut.gains, beats * tokens, rng, traffic.stall)
            got.append([[int(v) for v in g] for g in out])
            await ctx.tick()
            assert not ctx.get(dut.gains.valid)      # no more than the tokens asked for

    run_simulation(dut, bench, background=[watchdog(2000)])
    assert not any(early)
    offset = 0
    for (beats, tokens), out in zip(vectors, got):
        assert out == values[offset:offset + beats].tolist() * tokens
        offset += beats


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_embed_fetcher_reads_each_tokens_row(traffic):
    """One read command per token, in order, for ``base + id * words`` words: the id is
    lane 0 of its beat, used modulo 2 ** id_bits; random gaps on the ids and back-pressure
    on the commands, two jobs back to back."""
    config = TINY
    dut = EmbedFetcher(config)
    rng = random.Random(7)
    jobs = [{"base": 1000, "words": 16, "tokens": config.max_tokens},
            {"base": 37, "words": 5, "tokens": 1}]
    ids = [[rng.randrange(config.model.vocab_size) for _ in range(job["tokens"])]
           for job in jobs]
    ids[0][1] += 3 << config.id_bits              # bits above id_bits are ignored
    beats = [{"values": [i] + [rng.randrange(-2 ** 31, 2 ** 31) for _ in range(config.lanes - 1)],
              "last": 1} for job_ids in ids for i in job_ids]
    expected = [{"addr": job["base"] + (i % (1 << config.id_bits)) * job["words"],
                 "words": job["words"]} for job, job_ids in zip(jobs, ids) for i in job_ids]

    async def send_jobs(ctx):
        await stream_send(ctx, dut.job, jobs, random.Random(1), traffic.idle)

    async def send_ids(ctx):
        await stream_send(ctx, dut.ids, beats, random.Random(2), traffic.idle)

    got = []

    async def receive(ctx):
        commands = await stream_receive(ctx, dut.read_cmd, len(expected), random.Random(3),
                                        traffic.stall)
        got.extend({"addr": int(c.addr), "words": int(c.words)} for c in commands)

    run_simulation(dut, send_jobs, send_ids, receive, background=[watchdog(2000)])
    assert got == expected


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_half_word_widener_sign_extends_two_beats_per_word(traffic):
    """Each word of 2 x lanes int16 values leaves as two beats of int32, low half first,
    every value sign-extended; random gaps on the words, back-pressure on the beats."""
    config = TINY
    lanes = config.lanes
    dut = HalfWordWidener(config)
    rng = np.random.default_rng(4)
    values = rng.integers(-2 ** 15, 2 ** 15, (6, 2 * lanes))
    values[0, :2] = (-2 ** 15, 2 ** 15 - 1)               # both ends of the range
    words = [{"data": sum((int(v) & 0xFFFF) << (16 * i) for i, v in enumerate(row)),
              "last": 0} for row in values]
    got = []

    async def send(ctx):
        await stream_send(ctx, dut.words, words, random.Random(5), traffic.idle)

    async def receive(ctx):
        beats = await stream_receive(ctx, dut.beats, 2 * len(words), random.Random(6),
                                     traffic.stall)
        got.extend([int(v) for v in beat.values] for beat in beats)

    run_simulation(dut, send, receive, background=[watchdog(500)])
    assert got == values.reshape(-1, lanes).tolist()
