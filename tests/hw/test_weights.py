# amaranth: UnusedElaboratable=no
"""Weight buffer manager (amaranth.sim): gearbox, chunk buffer and the whole manager."""

import random

import numpy as np
import pytest

from tritium.hw.config import TLMMConfig
from tritium.hw.memory.port import MemoryConfig
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tritium.hw.memory.port import MemoryPortSignature
from tritium.hw.weights import (ChunkBuffer, Gearbox, WeightBufferManager, WeightPrefetcher,
                                WordQueue, weight_job_layout)
from tritium.hw.layouts import weight_word_layout
from tritium.host.packer import pack_ternary, word_codes
from tritium.sim.testing.amaranth_tb import (TRAFFIC, run_simulation, stream_receive, stream_send,
                                             watchdog)


def bits_to_words(bits, width):
    return [int("".join(map(str, bits[i:i + width][::-1])), 2)
            for i in range(0, len(bits) - width + 1, width)]


def assert_passes(dut, sent, expected, traffic, seed):
    """Send ``sent`` into ``dut.i`` and receive ``dut.o`` under ``traffic``: ``expected``."""
    async def send(ctx):
        await stream_send(ctx, dut.i, sent, random.Random(seed), traffic.idle)

    async def receive(ctx):
        got = await stream_receive(ctx, dut.o, len(expected), random.Random(seed + 1),
                                   traffic.stall)
        assert [int(v) for v in got] == expected

    run_simulation(dut, send, receive)


@pytest.mark.parametrize("widths", [(8, 20), (64, 20), (16, 16), (32, 160), (24, 5), (8, 16)])
@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_gearbox_keeps_bit_order(widths, traffic):
    size_in, size_out = widths
    rng = random.Random(size_in * size_out)
    bits = [rng.randrange(2) for _ in range(size_in * size_out * 4)]
    assert_passes(Gearbox(size_in, size_out), bits_to_words(bits, size_in),
                  bits_to_words(bits, size_out), traffic, size_in * size_out)


def test_gearbox_flush_drops_padding():
    dut = Gearbox(8, 12)

    async def bench(ctx):
        await stream_send(ctx, dut.i, [0xAB, 0xCD])           # 16 bits: one word + 4 spare
        got = await stream_receive(ctx, dut.o, 1)
        assert int(got[0]) == 0xDAB
        ctx.set(dut.flush, 1)
        await ctx.tick()
        ctx.set(dut.flush, 0)
        await stream_send(ctx, dut.i, [0x12, 0x34])
        assert int((await stream_receive(ctx, dut.o, 1))[0]) == 0x412

    run_simulation(dut, bench)


def test_gearbox_of_whole_words_flush_drops_a_partial_word():
    """The collecting form (an output word of whole input words) drops its held words."""
    dut = Gearbox(8, 24)

    async def bench(ctx):
        await stream_send(ctx, dut.i, [0xAB, 0xCD, 0xEF, 0x01])    # a word and one spare
        assert int((await stream_receive(ctx, dut.o, 1))[0]) == 0xEFCDAB
        ctx.set(dut.flush, 1)
        await ctx.tick()
        ctx.set(dut.flush, 0)
        await stream_send(ctx, dut.i, [0x12, 0x34, 0x56])
        assert int((await stream_receive(ctx, dut.o, 1))[0]) == 0x563412

    run_simulation(dut, bench)


CFG = TLMMConfig(group=3, tables=2, rows=2, tokens=3, max_k=24, max_n=10)


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("shape", [(4, 5, 3), (1, 1, 1), (2, 1, 2), (3, 5, 1)])
def test_chunk_buffer_replays_each_chunk_per_token(traffic, shape):
    chunks, row_blocks, tokens = shape
    dut = ChunkBuffer(CFG)
    words = list(range(1, chunks * row_blocks + 1))
    expected = [words[kb * row_blocks + rb] for kb in range(chunks) for _ in range(tokens)
                for rb in range(row_blocks)]
    seed = chunks * 100 + row_blocks * 10 + tokens

    async def send(ctx):
        for _ in range(2):                                      # two matrices back to back
            await stream_send(ctx, dut.load, [{"chunks": chunks, "row_blocks": row_blocks}])
            await stream_send(ctx, dut.words, [[[w, 0], [0, 0]] for w in words],
                              random.Random(seed), traffic.idle)

    async def start(ctx):
        for _ in range(2):                                      # each replayed when asked
            await stream_send(ctx, dut.job, [{"chunks": chunks, "row_blocks": row_blocks,
                                              "tokens": tokens}])

    async def receive(ctx):
        got = await stream_receive(ctx, dut.replay, 2 * len(expected), random.Random(seed + 1),
                                   traffic.stall, decode=lambda p: int(p[0][0]))
        assert got == expected * 2

    run_simulation(dut, send, start, receive)


def memory_responder(dut, image: bytes, memory: MemoryConfig, rng, idle):
    """A testbench memory: answers read commands from ``image`` with random gaps."""
    width = memory.bytes_per_word

    async def serve(ctx):
        while True:
            # A plain tick loop (not .until()): a background testbench may be stopped at
            # any await, and .until() complains when it is closed mid-wait.
            ctx.set(dut.memory.read_cmd.ready, 1)
            _, _, valid, command = await ctx.tick().sample(dut.memory.read_cmd.valid,
                                                           dut.memory.read_cmd.payload)
            if not valid:
                continue
            ctx.set(dut.memory.read_cmd.ready, 0)
            addr, count = int(command.addr), int(command.words)
            beats = []
            for i in range(count):
                chunk = image[(addr + i) * width:(addr + i + 1) * width].ljust(width, b"\0")
                beats.append({"data": int.from_bytes(chunk, "little"), "last": int(i == count - 1)})
            await stream_send(ctx, dut.memory.read_data, beats, rng, idle)

    return serve


def packed_matrices(memory, shapes, seed):
    """Random matrices of ``shapes`` ((chunks, row_blocks, tokens) each) packed one after
    another: their jobs, the memory image, and the words the engine must get in order."""
    rng = np.random.default_rng(seed)
    jobs, image, expected = [], b"", []
    for chunks, row_blocks, tokens in shapes:
        weights = rng.integers(-1, 2, (row_blocks * CFG.rows, chunks * CFG.k_per_word))
        packed = pack_ternary(weights, CFG.tile).data
        base = len(image) // memory.bytes_per_word
        image += packed + bytes(-len(packed) % memory.bytes_per_word)
        jobs.append({"base": base, "chunks": chunks, "row_blocks": row_blocks, "tokens": tokens})
        words = word_codes(weights, CFG.tile).reshape(chunks, row_blocks, CFG.rows, CFG.tables)
        expected += [words[kb, rb].tolist() for kb in range(chunks) for _ in range(tokens)
                     for rb in range(row_blocks)]
    return jobs, image, expected


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("data_width", [16, 64])
def test_manager_streams_a_packed_matrix_in_engine_order(traffic, data_width):
    memory = MemoryConfig(data_width=data_width, addr_width=12, len_width=8)
    dut = WeightBufferManager(CFG, memory, burst=5)
    jobs, image, expected = packed_matrices(memory, [(4, 5, 3), (2, 3, 1)], data_width)
    serve = memory_responder(dut, image, memory, random.Random(3), traffic.idle)

    async def send_jobs(ctx):
        await stream_send(ctx, dut.job, jobs)

    async def receive(ctx):
        got = await stream_receive(ctx, dut.words, len(expected), random.Random(4), traffic.stall,
                                   decode=lambda p: [[int(c) for c in row] for row in p])
        assert got == expected
        assert ctx.get(dut.fetched_words) == len(image) // memory.bytes_per_word

    run_simulation(dut, send_jobs, receive, background=[serve])


def test_manager_rejects_bad_burst():
    with pytest.raises(ValueError, match="burst"):
        WeightBufferManager(CFG, MemoryConfig(len_width=4), burst=16)


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_word_queue_keeps_order(traffic):
    words = list(range(1, 60))
    assert_passes(WordQueue(12, 8), words, words, traffic, 5)


def test_word_queue_holds_its_depth_and_one_in_its_read_register():
    dut = WordQueue(8, 4)

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        taken = 0
        for word in range(10):
            ctx.set(dut.i.payload, word)
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            taken += ready
        assert taken == 5                            # 4 in the RAM, 1 in the read register
        ctx.set(dut.i.valid, 0)
        got = await stream_receive(ctx, dut.o, 5)
        assert [int(w) for w in got] == [0, 1, 2, 3, 4]

    run_simulation(dut, bench)


def test_word_queue_rejects_a_depth_not_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        WordQueue(8, 6)


class QueuedWeights(wiring.Component):
    """A WeightPrefetcher feeding a queued WeightBufferManager, as the datapath has them."""

    def __init__(self, config, memory, depth, burst):
        self._args = (config, memory, depth, burst)
        job = stream.Signature(weight_job_layout(config, memory))
        super().__init__({"prefetch": In(job), "job": In(job),
                          "memory": Out(MemoryPortSignature(memory)),
                          "words": Out(stream.Signature(weight_word_layout(config.tile)))})

    def elaborate(self, platform):
        m = Module()
        config, memory, depth, burst = self._args
        m.submodules.prefetcher = prefetcher = WeightPrefetcher(config, memory, depth, burst)
        m.submodules.manager = manager = WeightBufferManager(config, memory, queued=True)
        wiring.connect(m, wiring.flipped(self.prefetch), prefetcher.job)
        wiring.connect(m, wiring.flipped(self.job), manager.job)
        wiring.connect(m, prefetcher.memory, wiring.flipped(self.memory))
        wiring.connect(m, prefetcher.words, manager.queue)
        wiring.connect(m, prefetcher.loads, manager.loads)
        wiring.connect(m, manager.words, wiring.flipped(self.words))
        return m


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("depth", [8, 64])          # smaller than a matrix, larger than all
def test_prefetched_matrices_stream_in_engine_order_and_never_hold_the_memory(traffic, depth):
    """Three matrices prefetched ahead of their jobs (two at once, as a program does),
    through a queue smaller than a matrix and larger: the same words in engine order as
    the manager that reads for itself, and the memory's words always taken at once (a
    burst is asked for only when the queue has room for it)."""
    memory = MemoryConfig(data_width=16, addr_width=12, len_width=8)
    dut = QueuedWeights(CFG, memory, depth, burst=5)
    jobs, image, expected = packed_matrices(memory, [(4, 5, 3), (2, 3, 1), (4, 5, 2)], depth)
    serve = memory_responder(dut, image, memory, random.Random(3), traffic.idle)

    async def send_jobs(ctx):
        await stream_send(ctx, dut.prefetch, jobs[:2])
        for index, job in enumerate(jobs):
            for _ in range(random.Random(index).randrange(40)):
                await ctx.tick()
            await stream_send(ctx, dut.job, [job])
            if index + 2 < len(jobs):
                await stream_send(ctx, dut.prefetch, [jobs[index + 2]])

    async def receive(ctx):
        got = await stream_receive(ctx, dut.words, len(expected), random.Random(4), traffic.stall,
                                   decode=lambda p: [[int(c) for c in row] for row in p])
        assert got == expected

    async def never_held(ctx):
        async for _, _, valid, ready in ctx.tick().sample(dut.memory.read_data.valid,
                                                          dut.memory.read_data.ready):
            assert ready or not valid

    run_simulation(dut, send_jobs, receive, background=[serve, never_held])


def test_the_next_matrix_is_loaded_before_its_job_comes():
    """The manager loads each matrix the prefetcher names as soon as it is done with the
    one before: a job that comes after the words are queued finds its first chunk loaded,
    and that chunk's first pass leaves a word a cycle, where loading it behind the job
    (2.5 bus words an engine word here) could not."""
    memory = MemoryConfig(data_width=8, addr_width=12, len_width=8)
    dut = QueuedWeights(CFG, memory, 64, burst=5)
    jobs, image, expected = packed_matrices(memory, [(2, 5, 1), (2, 5, 1)], 5)
    serve = memory_responder(dut, image, memory, random.Random(3), 0.0)
    arrivals = []

    async def send_jobs(ctx):
        await stream_send(ctx, dut.prefetch, jobs)
        await stream_send(ctx, dut.job, jobs[:1])
        while len(arrivals) < 10:                       # the first matrix's words out
            await ctx.tick()
        for _ in range(60):                             # the second's queued meanwhile
            await ctx.tick()
        await stream_send(ctx, dut.job, jobs[1:])

    async def receive(ctx):
        ctx.set(dut.words.ready, 1)
        cycle = 0
        async for _, _, valid, payload in ctx.tick().sample(dut.words.valid, dut.words.payload):
            cycle += 1
            if valid:
                arrivals.append((cycle, [[int(c) for c in row] for row in payload]))

    async def check(ctx):
        while len(arrivals) < len(expected):
            await ctx.tick()
        assert [words for _, words in arrivals] == expected
        first_pass = [cycle for cycle, _ in arrivals[10:15]]
        assert first_pass == list(range(first_pass[0], first_pass[0] + 5)), first_pass

    run_simulation(dut, send_jobs, check, background=[serve, receive, watchdog(5000)])


def test_prefetcher_rejects_a_queue_smaller_than_a_burst():
    with pytest.raises(ValueError, match="cannot take a burst"):
        WeightPrefetcher(CFG, MemoryConfig(data_width=16, addr_width=12, len_width=8), 4, burst=5)
