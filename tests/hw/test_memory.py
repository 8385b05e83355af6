# amaranth: UnusedElaboratable=no
"""Tier 1: the memory port implementations (on-chip, simulation model, AXI4 master) in amaranth.sim.

Every stream of the port runs with random valid gaps and ready back-pressure (the four
TRAFFIC patterns); the AXI4 master talks to a Python AXI4 slave model with random gaps
on all five channels. Seeds are fixed; a failing case replays exactly.
"""

import random
from collections import deque
from fractions import Fraction

import pytest

from tritium.hw.memory import (
    SIM_MEMORY_PIPELINE_CYCLES, AXI4Master, AXI4Signature, BoardMemory, MemoryConfig,
    OnChipMemory, SimMemory)
from tritium.hw.memory_model import MemoryModel, PortModel
from tritium.hw.memory.axi import (AXI_BURST_INCR,
                                   AXI_RESP_SLVERR as AXI_SLVERR)
from tritium.hw.memory.onchip import BANK_ROWS, BANKS_PER_GROUP, read_latency
from tritium.hw.memory.simmodel import as_rate
from tritium.sim.testing.amaranth_tb import (TRAFFIC, run_simulation, stream_receive, stream_send,
                                      watchdog)

SMOOTH = TRAFFIC[0]

# One geometry for the functional tests: 4-byte words, so 4 KiB is 1024 words.
CONFIG = MemoryConfig(data_width=32, addr_width=14, len_width=10)
DEPTH = 2048
KINDS = ["onchip", "sim", "axi", "board"]
# A two-port board model for the functional tests: 3.25 and 2 bytes per cycle at 1 Hz,
# 5 and 0 cycles of latency, sharing 4 bytes per cycle.
TWO_PORTS = MemoryModel("two", ports=(PortModel("a", bytes_per_second=3.25, latency_ns=5e9),
                                       PortModel("b", bytes_per_second=2)),
                        aggregate_bytes_per_second=4)


def random_words(rng, count, width=CONFIG.data_width):
    return [rng.getrandbits(width) for _ in range(count)]


class AXI4SlaveModel:
    """An AXI4 slave backed by a bytearray, for testbenches.

    Answers reads and writes in order, ``latency`` cycles after the address handshake at
    the earliest, with random gaps: ``traffic.idle`` on RVALID/BVALID and ``traffic.stall``
    on ARREADY/AWREADY/WREADY. Checks every burst against the AXI4 rules the master
    promises (INCR, full-width beats, at most ``max_burst`` beats, no 4 KiB crossing,
    WLAST placement, full strobes) and records the bursts and the deepest read queue.
    Bytes in ``error_addrs`` answer SLVERR; ``misplace_rlast`` puts RLAST one beat early.
    """

    def __init__(self, axi, memory: bytearray, *, bytes_per_beat, max_burst, seed,
                 traffic=SMOOTH, latency=2, error_addrs=(), misplace_rlast=False):
        self.axi, self.memory = axi, memory
        self.bytes_per_beat, self.max_burst, self.latency = bytes_per_beat, max_burst, latency
        self.traffic = traffic
        self.rng = random.Random(seed)
        self.error_addrs = set(error_addrs)
        self.misplace_rlast = misplace_rlast
        self.now = 0
        self.reads, self.writes = deque(), deque()       # accepted, not yet answered
        self.write_beats, self.responses = deque(), deque()
        self.read_bursts, self.write_bursts = [], []     # (byte address, beats) log
        self.reads_in_flight = self.max_reads_in_flight = 0

    @property
    def testbenches(self):
        return [self._count_cycles, self._ar, self._r, self._aw, self._w, self._b]

    def _check_burst(self, prefix, addr, length, size, burst, cache):
        beats = length + 1
        last_byte = addr + beats * self.bytes_per_beat - 1
        # Reads Normal Non-cacheable Bufferable; writes Non-bufferable, their response
        # from memory itself (axi.AXI_CACHE).
        assert burst == AXI_BURST_INCR and cache == {"ar": 0b0011, "aw": 0b0010}[prefix]
        assert 1 << size == self.bytes_per_beat, f"AxSIZE {size}"
        assert beats <= self.max_burst, f"burst of {beats} beats"
        assert addr % self.bytes_per_beat == 0, f"unaligned address {addr:#x}"
        assert addr // 4096 == last_byte // 4096, f"burst {addr:#x}+{beats} crosses 4 KiB"
        assert last_byte < len(self.memory)
        return beats

    async def _count_cycles(self, ctx):
        while True:
            await ctx.tick()
            self.now += 1

    async def _address_channel(self, ctx, prefix, queue, log):
        axi = self.axi
        fields = [getattr(axi, f"{prefix}{name}") for name in
                  ("valid", "addr", "len", "size", "burst", "cache")]
        while True:
            ready = self.rng.random() >= self.traffic.stall
            ctx.set(getattr(axi, f"{prefix}ready"), ready)
            _, _, valid, addr, length, size, burst, cache = await ctx.tick().sample(*fields)
            if valid and ready:
                beats = self._check_burst(prefix, addr, length, size, burst, cache)
                queue.append((self.now + self.latency, addr, beats))
                log.append((addr, beats))
                if prefix == "ar":
                    self.reads_in_flight += 1
                    self.max_reads_in_flight = max(self.max_reads_in_flight,
                                                   self.reads_in_flight)
                self._match_write_beats()

    async def _ar(self, ctx):
        await self._address_channel(ctx, "ar", self.reads, self.read_bursts)

    async def _aw(self, ctx):
        await self._address_channel(ctx, "aw", self.writes, self.write_bursts)

    async def _r(self, ctx):
        axi, size = self.axi, self.bytes_per_beat
        while True:
            if not self.reads or self.reads[0][0] > self.now:
                ctx.set(axi.rvalid, 0)
                await ctx.tick()
                continue
            _, addr, beats = self.reads.popleft()
            for beat in range(beats):
                while self.rng.random() < self.traffic.idle:
                    ctx.set(axi.rvalid, 0)
                    await ctx.tick()
                byte = addr + beat * size
                last_beat = beats - 2 if self.misplace_rlast and beats > 1 else beats - 1
                ctx.set(axi.rdata, int.from_bytes(self.memory[byte:byte + size], "little"))
                ctx.set(axi.rresp, AXI_SLVERR if byte in self.error_addrs else 0)
                ctx.set(axi.rlast, beat == last_beat)
                ctx.set(axi.rvalid, 1)
                await ctx.tick().until(axi.rready)
            ctx.set(axi.rvalid, 0)
            self.reads_in_flight -= 1

    async def _w(self, ctx):
        axi = self.axi
        full_strobe = (1 << self.bytes_per_beat) - 1
        while True:
            ready = self.rng.random() >= self.traffic.stall
            ctx.set(axi.wready, ready)
            _, _, valid, data, strobe, last = await ctx.tick().sample(
                axi.wvalid, axi.wdata, axi.wstrb, axi.wlast)
            if valid and ready:
                assert strobe == full_strobe
                self.write_beats.append((data, last))
                self._match_write_beats()

    def _match_write_beats(self):
        """Store the beats of each write burst once its address and all its beats are in."""
        while self.writes and len(self.write_beats) >= self.writes[0][2]:
            due, addr, beats = self.writes.popleft()
            for beat in range(beats):
                data, last = self.write_beats.popleft()
                assert last == (beat == beats - 1), f"WLAST on beat {beat} of {beats}"
                byte = addr + beat * self.bytes_per_beat
                self.memory[byte:byte + self.bytes_per_beat] = data.to_bytes(
                    self.bytes_per_beat, "little")
            failed = any(addr + offset in self.error_addrs
                         for offset in range(beats * self.bytes_per_beat))
            self.responses.append((due, failed))

    async def _b(self, ctx):
        axi = self.axi
        while True:
            if not self.responses or self.responses[0][0] > self.now:
                ctx.set(axi.bvalid, 0)
                await ctx.tick()
                continue
            _, failed = self.responses.popleft()
            while self.rng.random() < self.traffic.idle:
                ctx.set(axi.bvalid, 0)
                await ctx.tick()
            ctx.set(axi.bresp, AXI_SLVERR if failed else 0)
            ctx.set(axi.bvalid, 1)
            await ctx.tick().until(axi.bready)
            ctx.set(axi.bvalid, 0)


class Harness:
    """One memory implementation behind the port, with what it needs to run (AXI: a slave)."""

    def __init__(self, kind, *, init=(), seed=0, traffic=SMOOTH, config=CONFIG, depth=DEPTH,
                 max_burst=16, **slave_options):
        self.kind, self.config = kind, config
        self.background = []
        if kind == "onchip":
            self.dut = OnChipMemory(config, depth, init=init)
        elif kind == "sim":
            self.dut = SimMemory(config, depth, bytes_per_cycle=Fraction(10, 3), latency=5,
                                 init=init)
        elif kind == "board":
            self.dut = BoardMemory(config, depth, TWO_PORTS, clock_hz=1, ports=1, init=init)
        elif kind == "axi":
            self.dut = AXI4Master(config, max_burst=max_burst, max_outstanding=4)
            size = config.bytes_per_word
            self.memory = bytearray((2 ** config.addr_width) * size)
            for index, word in enumerate(init):
                self.memory[index * size:(index + 1) * size] = word.to_bytes(size, "little")
            self.slave = AXI4SlaveModel(self.dut.axi, self.memory, bytes_per_beat=size,
                                        max_burst=max_burst, seed=seed + 100, traffic=traffic,
                                        **slave_options)
            self.background = self.slave.testbenches
        else:
            raise ValueError(kind)
        self.port = self.dut.port[0] if kind == "board" else self.dut.port


def decode_read(payload):
    return (payload.data, payload.last)


def expected_reads(contents, reads):
    """The (word, last) sequence that ``reads`` of (addr, words) must return."""
    expected = []
    for addr, words in reads:
        for offset in range(words):
            expected.append((contents.get(addr + offset, 0), offset == words - 1))
    return expected


def run_port(harness, *, traffic=SMOOTH, seed=0, writes=(), reads=(), concurrent=False,
             later_reads=(), max_cycles=20000):
    """Issue ``writes`` (addr, [words]), wait for their write_done, then ``reads`` (addr, words).

    With ``concurrent`` the reads start at once, together with the writes, and
    ``later_reads`` follow once the writes are answered. Returns the (word, last) pairs
    read and the number of write_done transfers (counted for 30 cycles more than
    expected, so extra answers show).
    """
    port = harness.port
    result = {"reads": None, "dones": None}
    state = {"writes_finished": not writes}

    async def write_commands(ctx):
        await stream_send(ctx, port.write_cmd,
                          [{"addr": addr, "words": len(words)} for addr, words in writes],
                          random.Random(seed + 1), traffic.idle)

    async def write_words(ctx):
        await stream_send(ctx, port.write_data, [word for _, words in writes for word in words],
                          random.Random(seed + 2), traffic.idle)

    async def write_answers(ctx):
        answers = await stream_receive(ctx, port.write_done, len(writes),
                                       random.Random(seed + 3), traffic.stall)
        state["writes_finished"] = True
        ctx.set(port.write_done.ready, 1)
        for _ in range(30):
            _, _, valid = await ctx.tick().sample(port.write_done.valid)
            if valid:
                answers.append(valid)
        result["dones"] = len(answers)

    async def read_commands(ctx):
        while not (concurrent or state["writes_finished"]):
            await ctx.tick()
        rng = random.Random(seed + 4)
        await stream_send(ctx, port.read_cmd,
                          [{"addr": addr, "words": words} for addr, words in reads],
                          rng, traffic.idle)
        while not state["writes_finished"]:
            await ctx.tick()
        await stream_send(ctx, port.read_cmd,
                          [{"addr": addr, "words": words} for addr, words in later_reads],
                          rng, traffic.idle)

    async def read_words(ctx):
        total = sum(words for _, words in [*reads, *later_reads])
        result["reads"] = await stream_receive(ctx, port.read_data, total,
                                               random.Random(seed + 5), traffic.stall,
                                               decode=decode_read)

    run_simulation(harness.dut, write_commands, write_words, write_answers, read_commands,
                   read_words, background=[*harness.background, watchdog(max_cycles)])
    return result["reads"], result["dones"]


def random_reads(rng, count, limit, longest=60):
    reads = [(rng.randrange(limit - longest), rng.choice([1, rng.randint(1, longest)]))
             for _ in range(count)]
    return reads + [(rng.randrange(limit - 1), 1)]


# --- every implementation: reads, writes, zero-word commands, concurrency ---------------

@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("kind", KINDS)
def test_random_reads_return_stored_words(kind, traffic):
    rng = random.Random(f"reads-{kind}-{traffic}")
    init = random_words(rng, DEPTH)
    # Includes bursts across the 4 KiB boundary (word 1024) and longer than max_burst.
    reads = random_reads(rng, 10, DEPTH) + [(1020, 9), (1024 - 40, 57), (2, 1)]
    harness = Harness(kind, init=init, seed=rng.randrange(1000), traffic=traffic)
    got, _ = run_port(harness, traffic=traffic, seed=3, reads=reads)
    assert got == expected_reads(dict(enumerate(init)), reads)


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("kind", KINDS)
def test_writes_then_reads_back(kind, traffic):
    rng = random.Random(f"writes-{kind}-{traffic}")
    init = random_words(rng, DEPTH)
    contents = dict(enumerate(init))
    writes = []
    for length in [1, 40, 3, rng.randint(1, 30), 12]:
        addr = rng.randrange(DEPTH - length)
        writes.append((addr, random_words(rng, length)))
    writes.append((1024 - 5, random_words(rng, 11)))     # across 4 KiB
    for addr, words in writes:
        contents.update(zip(range(addr, addr + len(words)), words))
    reads = [(addr, len(words)) for addr, words in writes] + random_reads(rng, 3, DEPTH)
    harness = Harness(kind, init=init, seed=rng.randrange(1000), traffic=traffic)
    got, dones = run_port(harness, traffic=traffic, seed=5, writes=writes, reads=reads)
    assert dones == len(writes)
    assert got == expected_reads(contents, reads)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_word_commands(kind):
    """A zero-word read returns nothing; a zero-word write stores nothing and is answered."""
    rng = random.Random(7)
    init = random_words(rng, DEPTH)
    new = random_words(rng, 2)
    writes = [(5, []), (8, new), (100, [])]
    reads = [(5, 0), (8, 2), (100, 0), (5, 1), (100, 0)]
    harness = Harness(kind, init=init, seed=1)
    got, dones = run_port(harness, writes=writes, reads=reads)
    assert dones == 3
    assert got == [(new[0], 0), (new[1], 1), (init[5], 1)]
    if kind == "axi":
        assert all(beats > 0 for _, beats in harness.slave.read_bursts + harness.slave.write_bursts)


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("kind", KINDS)
def test_read_and_write_arriving_together_both_complete(kind, traffic):
    rng = random.Random(f"together-{kind}-{traffic}")
    init = random_words(rng, DEPTH)
    writes = [(300, random_words(rng, 20))]
    reads = [(700, 25)]        # a different region: the order between them does not matter
    later_reads = [(300, 20)]  # after write_done: sees the write
    contents = dict(enumerate(init))
    contents.update(zip(range(300, 320), writes[0][1]))
    harness = Harness(kind, init=init, seed=2, traffic=traffic)
    got, dones = run_port(harness, traffic=traffic, seed=9, writes=writes, reads=reads,
                          concurrent=True, later_reads=later_reads)
    assert dones == 1
    assert got == expected_reads(contents, reads + later_reads)


# --- address rules of the on-chip storage ------------------------------------------------

@pytest.mark.parametrize("kind", ["onchip", "sim"])
def test_addresses_wrap_modulo_power_of_two_depth(kind):
    config = MemoryConfig(data_width=16, addr_width=10, len_width=6)
    rng = random.Random(11)
    init = random_words(rng, 64, 16)
    new = random_words(rng, 4, 16)
    contents = dict(enumerate(init))
    contents.update({62: new[0], 63: new[1], 0: new[2], 1: new[3]})
    harness = Harness(kind, init=init, config=config, depth=64)
    got, _ = run_port(harness, writes=[(62, new)], reads=[(60, 8), (64 + 5, 2), (1023, 2)])
    wrapped = {addr: contents[addr % 64] for addr in list(range(60, 68)) + [69, 70, 1023, 1024]}
    assert got == expected_reads(wrapped, [(60, 8), (69, 2), (1023, 2)])


@pytest.mark.parametrize("kind", ["onchip", "sim"])
def test_rows_beyond_non_power_of_two_depth_read_zero(kind):
    config = MemoryConfig(data_width=16, addr_width=10, len_width=6)
    rng = random.Random(12)
    init = random_words(rng, 48, 16)
    harness = Harness(kind, init=init, config=config, depth=48)
    # Row 50 does not exist: the write is dropped. Address 64 + 2 is row 2.
    got, dones = run_port(harness, writes=[(50, [0xBEEF])], reads=[(44, 8), (64 + 2, 1)])
    assert dones == 1
    assert got == expected_reads(dict(enumerate(init)), [(44, 8), (2, 1)])


# --- SimMemory: bandwidth and latency ------------------------------------------------------

def measure_read(dut, commands, *, stall=0.0, seed=0, max_cycles=40000, background=()):
    """Send read commands back to back; return (command transfer cycles, word arrival cycles)."""
    port = dut.port
    stamps = {"commands": [], "words": []}
    total = sum(words for _, words in commands)

    async def sender(ctx):
        cycle = 0
        for addr, words in commands:
            ctx.set(port.read_cmd.payload, {"addr": addr, "words": words})
            ctx.set(port.read_cmd.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(port.read_cmd.ready)
                cycle += 1
                if ready:
                    break
            stamps["commands"].append(cycle)
        ctx.set(port.read_cmd.valid, 0)

    async def receiver(ctx):
        rng = random.Random(seed)
        cycle = 0
        while len(stamps["words"]) < total:
            ready = rng.random() >= stall
            ctx.set(port.read_data.ready, ready)
            _, _, valid = await ctx.tick().sample(port.read_data.valid)
            cycle += 1
            if valid and ready:
                stamps["words"].append(cycle)

    run_simulation(dut, sender, receiver, background=[*background, watchdog(max_cycles)])
    return stamps["commands"], stamps["words"]


@pytest.mark.parametrize("depth", [DEPTH, BANK_ROWS * BANKS_PER_GROUP + 3 * BANK_ROWS + 100],
                         ids=["single", "banked"])
def test_onchip_memory_latency_and_throughput(depth):
    dut = OnChipMemory(CONFIG, depth)
    issued, arrivals = measure_read(dut, [(0, 1), (100, 30), (7, 1), (2000, 40)])
    assert arrivals[0] - issued[0] == 1 + read_latency(depth)
    assert arrivals[-1] - arrivals[0] == 71          # one word per cycle across commands


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_banked_onchip_memory_reads_and_writes_every_bank(traffic):
    """More than BANK_ROWS words: banks in groups (the last group and bank partial),
    reads and writes across bank and group boundaries, under gaps and back-pressure."""
    depth = BANK_ROWS * BANKS_PER_GROUP + 2 * BANK_ROWS + 100
    assert read_latency(depth) > 1                  # banked
    rng = random.Random(f"banked-{traffic}")
    init = random_words(rng, depth)
    contents = dict(enumerate(init))
    edges = [BANK_ROWS - 3, BANK_ROWS * BANKS_PER_GROUP - 5, depth - 7]
    writes = [(addr, random_words(rng, 10)) for addr in edges[:2]]
    writes.append((depth - 7, random_words(rng, 7)))
    for addr, words in writes:
        contents.update(zip(range(addr, addr + len(words)), words))
    reads = ([(addr, len(words)) for addr, words in writes] + random_reads(rng, 4, depth)
             + [(BANK_ROWS * k - 2, 4) for k in range(1, depth // BANK_ROWS + 1)])
    harness = Harness("onchip", init=init, seed=rng.randrange(1000), traffic=traffic,
                      depth=depth)
    got, dones = run_port(harness, traffic=traffic, seed=6, writes=writes, reads=reads)
    assert dones == len(writes)
    assert got == expected_reads(contents, reads)


@pytest.mark.parametrize("data_width, bytes_per_cycle", [
    (64, 3),                    # int: 3/8 word per cycle
    (64, Fraction(12, 5)),      # 2.4 B/cycle
    (512, 51.2),                # 12.8 GB/s at 250 MHz on a 512-bit port: 0.8 word per cycle
    (32, Fraction(7, 3)),
], ids=["int3", "frac12_5", "float51.2", "frac7_3"])
def test_sim_memory_sustained_read_bandwidth(data_width, bytes_per_cycle):
    config = MemoryConfig(data_width=data_width, addr_width=12, len_width=12)
    dut = SimMemory(config, 4096, bytes_per_cycle=bytes_per_cycle, latency=20)
    words = 1500
    _, arrivals = measure_read(dut, [(0, words)])
    measured = (words - 1) * config.bytes_per_word / (arrivals[-1] - arrivals[0])
    assert abs(measured / float(as_rate(bytes_per_cycle)) - 1) < 0.02


def test_sim_memory_rate_above_port_width_gives_one_word_per_cycle():
    config = MemoryConfig(data_width=64, addr_width=12, len_width=12)
    dut = SimMemory(config, 4096, bytes_per_cycle=51.2, latency=3)
    _, arrivals = measure_read(dut, [(0, 200), (1000, 300)])
    assert arrivals[-1] - arrivals[0] == 499


@pytest.mark.parametrize("latency", [0, 1, 7, 40])
def test_sim_memory_first_word_latency(latency):
    dut = SimMemory(CONFIG, DEPTH, bytes_per_cycle=1, latency=latency)
    commands, arrivals = measure_read(dut, [(10, 3)])
    assert arrivals[0] - commands[0] == latency + SIM_MEMORY_PIPELINE_CYCLES


def test_sim_memory_latency_overlaps_earlier_data():
    """Commands are pipelined: 8 queued commands pay the latency once, not 8 times."""
    latency = 40
    dut = SimMemory(CONFIG, DEPTH, bytes_per_cycle=4, latency=latency)
    commands = [(64 * n, 32) for n in range(8)]
    issued, arrivals = measure_read(dut, commands)
    assert issued[-1] - issued[0] == 7              # all 8 accepted back to back
    assert arrivals[0] - issued[0] == latency + SIM_MEMORY_PIPELINE_CYCLES
    assert arrivals[-1] - arrivals[0] == 8 * 32 - 1  # then one word every cycle


def test_sim_memory_back_pressure_keeps_words_and_counts_them():
    rng = random.Random(21)
    init = random_words(rng, DEPTH)
    dut = SimMemory(CONFIG, DEPTH, bytes_per_cycle=Fraction(10, 3), latency=9, init=init)
    reads = [(100, 50), (7, 1), (1500, 33)]
    got = []

    async def bench(ctx):
        await stream_send(ctx, dut.port.read_cmd, [{"addr": a, "words": n} for a, n in reads])

    async def receiver(ctx):
        got.extend(await stream_receive(ctx, dut.port.read_data, 84, random.Random(3), 0.6,
                                        decode=decode_read))
        await ctx.tick().repeat(5)
        assert ctx.get(dut.read_words) == 84
        assert not ctx.get(dut.port.read_data.valid)

    run_simulation(dut, bench, receiver, background=[watchdog(5000)])
    assert got == expected_reads(dict(enumerate(init)), reads)


def test_sim_memory_writes_consume_bandwidth():
    config = MemoryConfig(data_width=64, addr_width=12, len_width=12)
    dut = SimMemory(config, 4096, bytes_per_cycle=Fraction(12, 5), latency=10)
    words = 600
    stamps = []

    async def commands(ctx):
        await stream_send(ctx, dut.port.write_cmd, [{"addr": 0, "words": words}])

    async def data(ctx):
        ctx.set(dut.port.write_data.valid, 1)
        cycle = 0
        while len(stamps) < words:
            ctx.set(dut.port.write_data.payload, len(stamps))
            _, _, ready = await ctx.tick().sample(dut.port.write_data.ready)
            cycle += 1
            if ready:
                stamps.append(cycle)
        ctx.set(dut.port.write_data.valid, 0)

    async def done(ctx):
        assert len(await stream_receive(ctx, dut.port.write_done, 1)) == 1

    run_simulation(dut, commands, data, done, background=[watchdog(5000)])
    measured = (words - 1) * 8 / (stamps[-1] - stamps[0])
    assert abs(measured / 2.4 - 1) < 0.02


# --- AXI4 master ------------------------------------------------------------------------

def test_axi_long_reads_and_writes_with_default_bursts():
    """256-beat bursts, split at 4 KiB; writes of 300 words, read back through the slave."""
    rng = random.Random(31)
    init = random_words(rng, 2 ** CONFIG.addr_width)
    harness = Harness("axi", init=init, seed=4, max_burst=256, traffic=TRAFFIC[3])
    writes = [(3000, random_words(rng, 300))]
    reads = [(900, 600), (3000, 300)]
    contents = dict(enumerate(init))
    contents.update(zip(range(3000, 3300), writes[0][1]))
    got, dones = run_port(harness, traffic=TRAFFIC[3], writes=writes, reads=reads)
    assert dones == 1
    assert got == expected_reads(contents, reads)
    read_bursts = harness.slave.read_bursts
    assert max(beats for _, beats in read_bursts) == 256
    # 900..1499: 124 beats to the 4 KiB boundary at word 1024, then 256, 220.
    assert [beats for _, beats in read_bursts[:3]] == [124, 256, 220]
    assert [beats for _, beats in harness.slave.write_bursts] == [72, 228]


def test_axi_keeps_several_reads_outstanding():
    rng = random.Random(32)
    init = random_words(rng, 4096)
    harness = Harness("axi", init=init, max_burst=8, latency=30)
    reads = [(0, 128)]
    got, _ = run_port(harness, reads=reads)
    assert got == expected_reads(dict(enumerate(init)), reads)
    assert harness.slave.max_reads_in_flight == 4        # max_outstanding of the harness


def test_axi_streams_one_word_per_cycle():
    """With enough bursts in flight, a slave of 20 cycles latency streams a word per cycle."""
    harness = Harness("axi", init=list(range(4096)), max_burst=16, latency=20)
    issued, arrivals = measure_read(harness.dut, [(0, 1000)], background=harness.background)
    assert arrivals[-1] - arrivals[0] == 999
    # Splitter 1 + its register stage 1 + AR queue 2 + slave 20 + its R register 1 + read
    # buffer 2 cycles.
    assert arrivals[0] - issued[0] == 20 + 7


def test_axi_bursts_split_at_the_end_of_a_small_address_space():
    """A 64-word address space: a command running past its end wraps, split in two bursts."""
    config = MemoryConfig(data_width=32, addr_width=6, len_width=6)
    init = random_words(random.Random(33), 64)
    harness = Harness("axi", init=init, config=config)
    got, _ = run_port(harness, reads=[(60, 8)])
    assert got == expected_reads({60 + n: init[(60 + n) % 64] for n in range(8)}, [(60, 8)])
    assert harness.slave.read_bursts == [(240, 4), (0, 4)]


def run_axi_error_case(**slave_options):
    init = list(range(4096))
    harness = Harness("axi", init=init, **slave_options)
    observed = {}

    async def bench(ctx):
        assert not ctx.get(harness.dut.error)
        await stream_send(ctx, harness.port.read_cmd, [{"addr": 10, "words": 20}])
        got = await stream_receive(ctx, harness.port.read_data, 20, decode=decode_read)
        observed["read_error"] = ctx.get(harness.dut.error)
        observed["reads"] = got
        await stream_send(ctx, harness.port.write_cmd, [{"addr": 200, "words": 4}])
        await stream_send(ctx, harness.port.write_data, [1, 2, 3, 4])
        await stream_receive(ctx, harness.port.write_done, 1)
        await ctx.tick()
        observed["write_error"] = ctx.get(harness.dut.error)

    run_simulation(harness.dut, bench, background=[*harness.background, watchdog(3000)])
    assert observed["reads"] == expected_reads(dict(enumerate(init)), [(10, 20)])
    return observed


def test_axi_error_is_sticky_after_read_error_response():
    observed = run_axi_error_case(error_addrs=[15 * 4])
    assert observed["read_error"] and observed["write_error"]


def test_axi_error_on_write_error_response():
    observed = run_axi_error_case(error_addrs=[201 * 4])
    assert not observed["read_error"]
    assert observed["write_error"]


def test_axi_error_on_misplaced_rlast():
    observed = run_axi_error_case(misplace_rlast=True)
    assert observed["read_error"]


def test_axi_no_error_on_clean_traffic():
    observed = run_axi_error_case()
    assert not observed["read_error"] and not observed["write_error"]


def test_axi_verilog_port_names():
    from tritium.hw.verilog import generate_verilog
    text = generate_verilog(AXI4Master(MemoryConfig(data_width=64, addr_width=20)), "axi_top")
    for name in ["axi__araddr", "axi__arlen", "axi__arsize", "axi__arburst", "axi__arid",
                 "axi__rdata", "axi__rlast", "axi__rresp", "axi__awaddr", "axi__wstrb",
                 "axi__wlast", "axi__bresp", "axi__bready", "error"]:
        assert f" {name};" in text or f" {name} " in text, name
    assert "[22:0] axi__araddr" in text      # 20-bit word address, 8-byte words


# --- configuration errors ---------------------------------------------------------------

@pytest.mark.parametrize("cls", [OnChipMemory, SimMemory])
@pytest.mark.parametrize("depth", [0, -4, 2.5, True, 2 ** 14 + 1])
def test_config_rejects_bad_depth(cls, depth):
    extra = {"bytes_per_cycle": 4, "latency": 0} if cls is SimMemory else {}
    with pytest.raises(ValueError, match="depth"):
        cls(CONFIG, depth, **extra)


def test_config_rejects_bad_init():
    with pytest.raises(ValueError, match="init"):
        OnChipMemory(CONFIG, 4, init=[0] * 5)
    with pytest.raises(ValueError, match=r"init\[1\]"):
        OnChipMemory(CONFIG, 4, init=[0, 2 ** 32])
    with pytest.raises(TypeError, match="config"):
        OnChipMemory({"data_width": 32}, 4)


@pytest.mark.parametrize("rate", [0, -1, 0.0, -2.5, Fraction(-1, 3), float("nan"),
                                  float("inf"), "8", None, True])
def test_config_rejects_bad_bytes_per_cycle(rate):
    with pytest.raises(ValueError, match="bytes_per_cycle"):
        SimMemory(CONFIG, 16, bytes_per_cycle=rate, latency=0)


@pytest.mark.parametrize("latency", [-1, 1.5, None])
def test_config_rejects_bad_latency(latency):
    with pytest.raises(ValueError, match="latency"):
        SimMemory(CONFIG, 16, bytes_per_cycle=1, latency=latency)


def test_config_rejects_bad_max_outstanding():
    with pytest.raises(ValueError, match="max_outstanding"):
        SimMemory(CONFIG, 16, bytes_per_cycle=1, latency=0, max_outstanding=0)
    with pytest.raises(ValueError, match="max_outstanding"):
        AXI4Master(CONFIG, max_outstanding=256)


def test_bytes_per_cycle_is_exact():
    assert as_rate(51.2) == Fraction(256, 5)
    assert as_rate(3) == 3 and as_rate(Fraction(7, 3)) == Fraction(7, 3)
    assert SimMemory(CONFIG, 16, bytes_per_cycle=0.1, latency=0).bytes_per_cycle == \
        Fraction(1, 10)


@pytest.mark.parametrize("max_burst", [0, 257, -1, 16.0])
def test_config_rejects_bad_max_burst(max_burst):
    with pytest.raises(ValueError, match="max_burst"):
        AXI4Master(CONFIG, max_burst=max_burst)


@pytest.mark.parametrize("data_width", [24, 48, 96, 2048])
def test_config_rejects_axi_data_width_not_power_of_two_bytes(data_width):
    with pytest.raises(ValueError, match="data_width"):
        AXI4Master(MemoryConfig(data_width=data_width))
    with pytest.raises(ValueError, match="data_width"):
        AXI4Signature(32, data_width, 1)


def test_config_rejects_bad_axi_signature_widths():
    with pytest.raises(ValueError, match="id_width"):
        AXI4Signature(32, 64, 0)
    with pytest.raises(ValueError, match="addr_width_bytes"):
        AXI4Signature(0, 64, 1)
    with pytest.raises(ValueError, match="id_width"):
        AXI4Master(CONFIG, axi_id_width=0)
    assert AXI4Signature(32, 64, 2) == AXI4Signature(32, 64, 2)
    assert AXI4Signature(32, 64, 2) != AXI4Signature(32, 64, 1)
