# amaranth: UnusedElaboratable=no
"""Tier 1: the port striper (amaranth.sim) in front of a board memory with several ports.

Reads of every length and alignment come back whole and in order under every traffic
pattern, zero-word reads return nothing, writes go through port 0 and read back through
the others, and the ports together stream what the memory model says.
"""

import random

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tritium.hw.memory import BoardMemory, MemoryConfig, MemoryPortSignature
from tritium.hw.memory.stripe import PortStriper
from tritium.hw.memory_model import MEMORY_MODELS
from tritium.sim.testing.amaranth_tb import (TRAFFIC, run_simulation, stream_receive,
                                             stream_send, watchdog)

KV260 = MEMORY_MODELS["kv260"]
CLOCK = 250_000_000
NARROW = MemoryConfig(data_width=32, addr_width=10, len_width=8)
# The kv260 preset's bus: 256-bit words, an HP port moves one every 2.02 cycles.
WIDE = MemoryConfig(data_width=256, addr_width=12, len_width=12)


class StripedMemory(wiring.Component):
    """A PortStriper on a BoardMemory of ``ports`` ports: one memory port, as a client sees it."""

    def __init__(self, config, ports, chunk_words, depth, init=(), **striper):
        self.striper = PortStriper(config, ports, chunk_words, **striper)
        self.memory = BoardMemory(config, depth, KV260, CLOCK, ports=ports, init=init)
        super().__init__({"port": In(MemoryPortSignature(config)),
                          "read_words": Out(32).array(ports)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.striper, m.submodules.memory = self.striper, self.memory
        wiring.connect(m, wiring.flipped(self.port), self.striper.client)
        for index, port in enumerate(self.striper.memory):
            wiring.connect(m, port, self.memory.port[index])
            m.d.comb += self.read_words[index].eq(self.memory.read_words[index])
        return m


def random_reads(rng, count, depth, longest):
    """Commands of 0 .. ``longest`` words at any address (some wrap past the end)."""
    return [{"addr": rng.randrange(depth),
             "words": rng.choice([0, 1, 2, rng.randrange(longest + 1)])}
            for _ in range(count)]


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("ports,chunk", [(2, 4), (3, 1), (4, 8)])
def test_reads_arrive_whole_and_in_order(traffic, ports, chunk):
    rng = random.Random(f"stripe-{traffic}-{ports}-{chunk}")
    depth = 2 ** NARROW.addr_width
    init = [rng.getrandbits(32) for _ in range(depth)]
    dut = StripedMemory(NARROW, ports, chunk, depth, init=init, buffer_words=2 * chunk + 1)
    commands = random_reads(rng, 40, depth, 40)
    expected = [(init[(c["addr"] + i) % depth], i == c["words"] - 1)
                for c in commands for i in range(c["words"])]
    got = {}

    async def send(ctx):
        await stream_send(ctx, dut.port.read_cmd, commands, random.Random(1), traffic.idle)

    async def receive(ctx):
        got["words"] = await stream_receive(ctx, dut.port.read_data, len(expected),
                                            random.Random(2), traffic.stall,
                                            decode=lambda p: (p.data, bool(p.last)))

    run_simulation(dut, send, receive, background=[watchdog(40000)])
    assert got["words"] == expected


def test_chunks_go_to_every_port_in_turn():
    """A 64-word read in chunks of 8 from an unaligned address: 9 chunks, 3 per port,
    so each of 3 ports moves its share (the first and last chunks are short)."""
    depth = 1024
    dut = StripedMemory(NARROW, 3, 8, depth, init=range(depth))
    got = {}

    async def send(ctx):
        await stream_send(ctx, dut.port.read_cmd, [{"addr": 5, "words": 64}])

    async def receive(ctx):
        got["words"] = await stream_receive(ctx, dut.port.read_data, 64, decode=lambda p: p.data)
        got["counts"] = [ctx.get(dut.read_words[i]) for i in range(3)]

    run_simulation(dut, send, receive, background=[watchdog(4000)])
    assert got["words"] == list(range(5, 69))
    # Chunks: 5..7 (3 words), 8..15, ..., 64..68 (5 words): ports 0, 1, 2, 0, 1, ...
    assert got["counts"] == [3 + 8 + 8, 8 + 8 + 8, 8 + 8 + 5]


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_writes_through_port_0_read_back_striped(traffic):
    rng = random.Random(f"stripe-write-{traffic}")
    depth = 1024
    dut = StripedMemory(NARROW, 4, 4, depth)
    writes = [{"addr": 100, "words": 37}, {"addr": 300, "words": 0}, {"addr": 500, "words": 9}]
    values = [rng.getrandbits(32) for _ in range(46)]
    done = {}

    async def commands(ctx):
        await stream_send(ctx, dut.port.write_cmd, writes, random.Random(1), traffic.idle)

    async def words(ctx):
        await stream_send(ctx, dut.port.write_data, values, random.Random(2), traffic.idle)

    async def acknowledgements(ctx):
        await stream_receive(ctx, dut.port.write_done, len(writes), random.Random(3), traffic.stall)
        done["written"] = True

    async def reads(ctx):
        while "written" not in done:
            await ctx.tick()
        await stream_send(ctx, dut.port.read_cmd, [{"addr": 100, "words": 37},
                                                   {"addr": 500, "words": 9}],
                          random.Random(4), traffic.idle)

    async def read_words(ctx):
        done["read"] = await stream_receive(ctx, dut.port.read_data, 46, random.Random(5),
                                            traffic.stall, decode=lambda p: p.data)

    run_simulation(dut, commands, words, acknowledgements, reads, read_words,
                   background=[watchdog(8000)])
    assert done["read"] == values


@pytest.mark.parametrize("ports", [1, 2, 4])
def test_striped_reads_stream_at_the_ports_combined_rate(ports):
    """256-bit words at 250 MHz in chunks of 8 (16 HP beats, one burst): the client gets
    the ports' sustained rate (at most one word per cycle) within 3%."""
    words = 1024
    if ports == 1:
        dut = BoardMemory(WIDE, 4096, KV260, CLOCK)
        port = dut.port[0]
    else:
        dut = StripedMemory(WIDE, ports, 8, 4096)
        port = dut.port
    arrivals = []

    async def send(ctx):
        await stream_send(ctx, port.read_cmd, [{"addr": 256 * n, "words": 256}
                                                for n in range(words // 256)])

    async def receive(ctx):
        ctx.set(port.read_data.ready, 1)
        cycle = 0
        while len(arrivals) < words:
            _, _, valid = await ctx.tick().sample(port.read_data.valid)
            cycle += 1
            if valid:
                arrivals.append(cycle)

    run_simulation(dut, send, receive, background=[watchdog(10000)])
    measured = (words - 1) * WIDE.bytes_per_word / (arrivals[-1] - arrivals[0])
    expected = min(KV260.sustained_bytes_per_cycle(ports, CLOCK, WIDE.bytes_per_word),
                   WIDE.bytes_per_word)
    assert measured == pytest.approx(float(expected), rel=0.03)


def first_word_latency(dut, port):
    """Cycles from a read command's transfer to its first word."""
    result = {}

    async def bench(ctx):
        ctx.set(port.read_cmd.payload, {"addr": 5, "words": 2})
        ctx.set(port.read_cmd.valid, 1)
        ctx.set(port.read_data.ready, 1)
        cycle, issued = 0, None
        while True:
            _, _, taken, arrived = await ctx.tick().sample(port.read_cmd.ready,
                                                           port.read_data.valid)
            cycle += 1
            if taken and issued is None:
                issued = cycle
                ctx.set(port.read_cmd.valid, 0)
            if arrived:
                result["latency"] = cycle - issued
                return

    run_simulation(dut, bench, background=[watchdog(500)])
    return result["latency"]


def test_the_striper_adds_its_latency():
    plain = BoardMemory(NARROW, 1024, KV260, CLOCK)
    striped = StripedMemory(NARROW, 2, 4, 1024)
    assert (first_word_latency(striped, striped.port)
            == first_word_latency(plain, plain.port[0]) + PortStriper.LATENCY)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="at least 2 ports"):
        PortStriper(NARROW, 1, 4)
    with pytest.raises(ValueError, match="power of two"):
        PortStriper(NARROW, 2, 6)
    with pytest.raises(ValueError, match="power of two"):
        PortStriper(NARROW, 2, 256)                 # a command carries at most 255 words
    with pytest.raises(ValueError, match="buffer_words"):
        PortStriper(NARROW, 2, 4, buffer_words=0)
    with pytest.raises(TypeError, match="MemoryConfig"):
        PortStriper(32, 2, 4)
