# amaranth: UnusedElaboratable=no
"""Tier 1: the port striper (amaranth.sim) in front of a board memory with several ports.

Reads of every length and alignment come back whole and in order under every traffic
pattern, zero-word reads return nothing, writes go through port 0 and read back through
the others, and the ports together stream what the memory model says. A wide client
(``ratio`` port words per word) reads the same way, at all the ports' rate, and cannot write.
"""

import random

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tritium.hw.memory import BoardMemory, MemoryConfig, MemoryPortSignature
from tritium.hw.memory.stripe import PortStriper
from tritium.hw.memory_model import MEMORY_MODELS
from tritium.sim.testing.amaranth_tb import (TRAFFIC, first_word_latency, run_simulation,
                                             stream_receive, stream_send, watchdog)

KV260 = MEMORY_MODELS["kv260"]
CLOCK = 250_000_000
NARROW = MemoryConfig(data_width=32, addr_width=10, len_width=8)
# The kv260 preset's bus: 256-bit words, an HP port moves one every 2.02 cycles.
WIDE = MemoryConfig(data_width=256, addr_width=12, len_width=12)


class StripedMemory(wiring.Component):
    """A PortStriper on a BoardMemory of ``ports`` ports: one memory port, as a client sees
    it (``ratio`` port words wide)."""

    def __init__(self, config, ports, chunk_words, depth, init=(), ratio=1, **striper):
        self.striper = PortStriper(config, ports, chunk_words, ratio=ratio, **striper)
        self.memory = BoardMemory(config, depth, KV260, CLOCK, ports=ports, init=init)
        super().__init__({"port": In(MemoryPortSignature(config.widened(ratio))),
                          "read_words": Out(32).array(ports),
                          "written_words": Out(32).array(ports)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.striper, m.submodules.memory = self.striper, self.memory
        wiring.connect(m, wiring.flipped(self.port), self.striper.client)
        for index, port in enumerate(self.striper.memory):
            wiring.connect(m, port, self.memory.port[index])
            m.d.comb += [self.read_words[index].eq(self.memory.read_words[index]),
                         self.written_words[index].eq(self.memory.written_words[index])]
        return m


def random_reads(rng, count, depth, longest):
    """Commands of 0 .. ``longest`` words at any address (some wrap past the end)."""
    return [{"addr": rng.randrange(depth),
             "words": rng.choice([0, 1, 2, rng.randrange(longest + 1)])}
            for _ in range(count)]


def wide_expected(init, commands, ratio):
    """The wide words and ``last`` flags of ``commands`` over narrow words ``init``."""
    depth, width = len(init), NARROW.data_width
    return [(sum(init[(ratio * (c["addr"] + i) + j) % depth] << (width * j)
                 for j in range(ratio)), i == c["words"] - 1)
            for c in commands for i in range(c["words"])]


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("ports,chunk,ratio", [(2, 4, 1), (3, 1, 1), (4, 8, 1), (2, 2, 2),
                                               (4, 8, 2), (4, 4, 4), (3, 4, 2)])
def test_reads_arrive_whole_and_in_order(traffic, ports, chunk, ratio):
    """Port words, or wide words of ``ratio`` of them; an odd buffer size (rounded up to
    whole wide words)."""
    rng = random.Random(f"stripe-{traffic}-{ports}-{chunk}-{ratio}")
    depth = 2 ** NARROW.addr_width
    init = [rng.getrandbits(32) for _ in range(depth)]
    dut = StripedMemory(NARROW, ports, chunk, depth, init=init, ratio=ratio,
                        buffer_words=2 * chunk + 1)
    commands = random_reads(rng, 40, depth // ratio, 40)
    expected = wide_expected(init, commands, ratio)
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


def streaming_rate(dut, port, words):
    """Bytes per cycle ``port`` delivers, first word to last, reading ``words`` words
    in commands of 256 as fast as it will."""
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
    return (words - 1) * len(port.read_data.payload.data) // 8 / (arrivals[-1] - arrivals[0])


@pytest.mark.parametrize("ports", [1, 2, 4])
def test_striped_reads_stream_at_the_ports_combined_rate(ports):
    """256-bit words at 250 MHz in chunks of 8 (16 HP beats, one burst): the client gets
    the ports' sustained rate (at most one word per cycle) within 3%."""
    if ports == 1:
        dut = BoardMemory(WIDE, 4096, KV260, CLOCK)
        port = dut.port[0]
    else:
        dut = StripedMemory(WIDE, ports, 8, 4096)
        port = dut.port
    expected = min(KV260.sustained_bytes_per_cycle(ports, CLOCK, WIDE.bytes_per_word),
                   WIDE.bytes_per_word)
    assert streaming_rate(dut, port, 1024) == pytest.approx(float(expected), rel=0.03)


@pytest.mark.parametrize("ports", [2, 4])
def test_wide_reads_stream_at_the_ports_combined_rate(ports):
    """512-bit client words over 256-bit ports at 250 MHz (the kv260 weight stream), in
    chunks of 8 port words: the client gets the ports' sustained rate within 3%, which for
    4 ports (53 bytes per cycle) is more than a 256-bit client can take (32)."""
    dut = StripedMemory(WIDE, ports, 8, 4096, ratio=2)
    expected = KV260.sustained_bytes_per_cycle(ports, CLOCK, WIDE.bytes_per_word)
    assert expected <= 2 * WIDE.bytes_per_word
    assert streaming_rate(dut, dut.port, 1024) == pytest.approx(float(expected), rel=0.03)


def test_the_striper_adds_its_latency():
    plain = BoardMemory(NARROW, 1024, KV260, CLOCK)
    striped = StripedMemory(NARROW, 2, 4, 1024)
    assert (first_word_latency(striped, striped.port)
            == first_word_latency(plain, plain.port[0]) + PortStriper.LATENCY)


@pytest.mark.parametrize("ratio", [2, 4])
def test_the_wide_striper_adds_its_latency(ratio):
    """A port delivers a 32-bit word per cycle: the first wide word comes ratio - 1 cycles
    after its first port word, as ``latency`` says."""
    plain = BoardMemory(NARROW, 1024, KV260, CLOCK)
    striped = StripedMemory(NARROW, 2, 4, 1024, ratio=ratio)
    assert striped.striper.latency == PortStriper.LATENCY + ratio - 1
    assert PortStriper(NARROW, 2, 4).latency == PortStriper.LATENCY
    assert (first_word_latency(striped, striped.port)
            == first_word_latency(plain, plain.port[0]) + striped.striper.latency)


def test_wide_chunks_go_to_every_port_in_turn():
    """32 wide words (ratio 2) from wide address 3: port words 6 .. 69 in chunks of 8,
    9 chunks, 3 per port as for a narrow read."""
    depth = 1024
    dut = StripedMemory(NARROW, 3, 8, depth, init=range(depth), ratio=2)
    got = {}

    async def send(ctx):
        await stream_send(ctx, dut.port.read_cmd, [{"addr": 3, "words": 32}])

    async def receive(ctx):
        got["words"] = await stream_receive(ctx, dut.port.read_data, 32,
                                            decode=lambda p: (p.data, bool(p.last)))
        got["counts"] = [ctx.get(dut.read_words[i]) for i in range(3)]

    run_simulation(dut, send, receive, background=[watchdog(4000)])
    assert got["words"] == [(6 + 2 * i | (7 + 2 * i) << 32, i == 31) for i in range(32)]
    # Chunks: 6..7 (2 words), 8..15, ..., 64..69 (6 words): ports 0, 1, 2, 0, 1, ...
    assert got["counts"] == [2 + 8 + 8, 8 + 8 + 8, 8 + 8 + 6]


def test_a_wide_client_cannot_write():
    """Write commands and data are never taken, nothing is acknowledged and no port
    writes, while reads go on."""
    depth = 1024
    dut = StripedMemory(NARROW, 2, 4, depth, init=range(depth), ratio=2)
    seen = {"write_cmd": 0, "write_data": 0, "write_done": 0, "port_writes": 0}
    got = {}

    async def writer(ctx):
        ctx.set(dut.port.write_cmd.payload, {"addr": 0, "words": 4})
        ctx.set(dut.port.write_cmd.valid, 1)
        ctx.set(dut.port.write_data.payload, 0xdead)
        ctx.set(dut.port.write_data.valid, 1)
        ctx.set(dut.port.write_done.ready, 1)
        memory = dut.striper.memory
        for _ in range(100):
            _, _, *flags = await ctx.tick().sample(
                dut.port.write_cmd.ready, dut.port.write_data.ready, dut.port.write_done.valid,
                *(port.write_cmd.valid for port in memory),
                *(port.write_data.valid for port in memory))
            seen["write_cmd"] += flags[0]
            seen["write_data"] += flags[1]
            seen["write_done"] += flags[2]
            seen["port_writes"] += sum(flags[3:])
        got["written"] = [ctx.get(dut.written_words[i]) for i in range(2)]

    async def send(ctx):
        await stream_send(ctx, dut.port.read_cmd, [{"addr": 0, "words": 8}])

    async def receive(ctx):
        got["words"] = await stream_receive(ctx, dut.port.read_data, 8, decode=lambda p: p.data)

    run_simulation(dut, writer, send, receive, background=[watchdog(1000)])
    assert seen == {"write_cmd": 0, "write_data": 0, "write_done": 0, "port_writes": 0}
    assert got["written"] == [0, 0]
    assert got["words"] == [2 * i | (2 * i + 1) << 32 for i in range(8)]


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
    with pytest.raises(ValueError, match="ratio must be a power of two, not 3"):
        PortStriper(NARROW, 2, 4, ratio=3)
    with pytest.raises(ValueError, match="ratio must be a power of two, not 0"):
        PortStriper(NARROW, 2, 4, ratio=0)
    with pytest.raises(ValueError, match=r"chunk_words \(2\) must be at least ratio \(4\)"):
        PortStriper(NARROW, 2, 2, ratio=4)
