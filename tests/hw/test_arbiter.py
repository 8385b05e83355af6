# amaranth: UnusedElaboratable=no
"""Tier 1: the port arbiter (amaranth.sim) in front of one memory port.

Clients reading at the same time get exactly their own words, whole and in order, under
every traffic pattern; waiting clients are granted in turn; client 0's writes read back
through another client, whose own writes never move; one client alone streams a word
per cycle, ``LATENCY`` cycles later than without the arbiter.
"""

import random
from fractions import Fraction

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from tritium.hw.memory import (BoardMemory, MemoryConfig, MemoryPortSignature, OnChipMemory,
                               SimMemory)
from tritium.hw.memory.arbiter import PortArbiter
from tritium.hw.memory_model import MEMORY_MODELS
from tritium.sim.testing.amaranth_tb import (TRAFFIC, first_word_latency, run_simulation,
                                             stream_receive, stream_send, watchdog)

CONFIG = MemoryConfig(data_width=32, addr_width=10, len_width=8)
DEPTH = 2 ** CONFIG.addr_width


def make_memory(kind, init=()):
    """A memory and its port: on-chip (a word per cycle), the DRAM model (under a word
    per cycle, 5 cycles of latency) or one port of the kv260 board model."""
    if kind == "onchip":
        memory = OnChipMemory(CONFIG, DEPTH, init=init)
        return memory, memory.port
    if kind == "sim":
        memory = SimMemory(CONFIG, DEPTH, bytes_per_cycle=Fraction(10, 3), latency=5, init=init)
        return memory, memory.port
    memory = BoardMemory(CONFIG, DEPTH, MEMORY_MODELS["kv260"], 250_000_000, init=init)
    return memory, memory.port[0]


class SharedMemory(wiring.Component):
    """A PortArbiter on one memory: ``clients`` memory ports, as the clients see them."""

    def __init__(self, kind, clients, reads_in_flight=32, init=(), background=False):
        self.arbiter = PortArbiter(CONFIG, clients, reads_in_flight, background)
        self.memory, self._memory_port = make_memory(kind, init)
        super().__init__({"port": In(MemoryPortSignature(CONFIG)).array(clients)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.arbiter, m.submodules.memory = self.arbiter, self.memory
        for port, client in zip(self.port, self.arbiter.client):
            wiring.connect(m, wiring.flipped(port), client)
        wiring.connect(m, self.arbiter.memory, self._memory_port)
        return m


def random_reads(rng, count, longest=30):
    """Commands of 0, 1, 2 or up to ``longest`` words at any address (some wrap)."""
    return [{"addr": rng.randrange(DEPTH),
             "words": rng.choice([0, 1, 2, rng.randrange(longest + 1)])}
            for _ in range(count)]


def expected_words(commands, init):
    return [(init[(c["addr"] + i) % DEPTH], i == c["words"] - 1)
            for c in commands for i in range(c["words"])]


def reading_clients(dut, commands, init, traffic, got):
    """Testbenches for each client: send its ``commands``, receive its words (data and
    ``last``) into ``got[index]``, under ``traffic``."""
    def benches(index):
        port, expected = dut.port[index], expected_words(commands[index], init)

        async def send(ctx):
            await stream_send(ctx, port.read_cmd, commands[index],
                              random.Random(10 + index), traffic.idle)

        async def receive(ctx):
            got[index] = await stream_receive(ctx, port.read_data, len(expected),
                                              random.Random(20 + index), traffic.stall,
                                              decode=lambda p: (p.data, bool(p.last)))
        return [send, receive]
    return [bench for index in range(len(commands)) for bench in benches(index)]


def grant_monitor(dut, grants):
    """A background testbench that appends, each cycle, the clients whose read command
    of one or more words transferred."""
    async def bench(ctx):
        commands = [port.read_cmd for port in dut.port]
        signals = [s for c in commands for s in (c.valid, c.ready, c.payload.words)]
        while True:
            _, _, *values = await ctx.tick().sample(*signals)
            for index in range(len(commands)):
                valid, ready, words = values[3 * index:3 * index + 3]
                if valid and ready and words:
                    grants.append(index)
    return bench


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("clients,reads_in_flight,kind",
                         [(2, 32, "sim"), (3, 32, "board"), (2, 1, "onchip"), (3, 2, "sim")])
def test_clients_get_their_own_words(traffic, clients, reads_in_flight, kind):
    rng = random.Random(f"arbiter-{traffic}-{clients}-{reads_in_flight}-{kind}")
    init = [rng.getrandbits(CONFIG.data_width) for _ in range(DEPTH)]
    dut = SharedMemory(kind, clients, reads_in_flight, init=init)
    commands = [random_reads(rng, 30) for _ in range(clients)]
    got = {}
    benches = reading_clients(dut, commands, init, traffic, got)
    run_simulation(dut, *benches, background=[watchdog(20000)])
    for index in range(clients):
        assert got[index] == expected_words(commands[index], init), f"client {index}"


@pytest.mark.parametrize("clients", [2, 3])
def test_waiting_clients_are_granted_in_turn(clients):
    """Every client keeps a command waiting: the grants go round, one client after the
    next, whatever the commands' lengths."""
    rng = random.Random(f"arbiter-fair-{clients}")
    dut = SharedMemory("onchip", clients)
    commands = [[{"addr": rng.randrange(DEPTH), "words": rng.randrange(1, 9)}
                 for _ in range(12)] for _ in range(clients)]
    grants = []

    def client_benches(index):
        port = dut.port[index]

        async def send(ctx):
            await stream_send(ctx, port.read_cmd, commands[index])

        async def receive(ctx):
            await stream_receive(ctx, port.read_data, sum(c["words"] for c in commands[index]))
        return [send, receive]

    benches = [bench for index in range(clients) for bench in client_benches(index)]
    run_simulation(dut, *benches, background=[grant_monitor(dut, grants), watchdog(4000)])
    assert grants == list(range(clients)) * 12


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_a_background_client_gets_its_own_words_and_only_what_others_leave(traffic):
    """With ``background`` client 0 is granted only in cycles no other client has a
    command waiting (each grant checked against the commands waiting in its cycle), and
    every client still gets exactly its own words."""
    rng = random.Random(f"arbiter-background-{traffic}")
    init = [rng.getrandbits(CONFIG.data_width) for _ in range(DEPTH)]
    dut = SharedMemory("sim", 3, init=init, background=True)
    commands = [random_reads(rng, 30) for _ in range(3)]
    got, violations, grants = {}, [], []

    async def priority(ctx):
        ports = [port.read_cmd for port in dut.port]
        signals = [s for c in ports for s in (c.valid, c.ready, c.payload.words)]
        while True:
            _, _, *values = await ctx.tick().sample(*signals)
            valid, ready, words = values[0:3]
            if valid and ready and words:
                grants.append(0)
                others = [values[3 * i] and values[3 * i + 2] for i in (1, 2)]
                if any(others):
                    violations.append(others)

    benches = reading_clients(dut, commands, init, traffic, got)
    run_simulation(dut, *benches, background=[priority, watchdog(20000)])
    for index in range(3):
        assert got[index] == expected_words(commands[index], init), f"client {index}"
    assert grants and not violations


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("clients", [2, 3])
def test_client_0_writes_and_others_read_back(traffic, clients):
    rng = random.Random(f"arbiter-write-{traffic}-{clients}")
    dut = SharedMemory("sim", clients)
    writes = [{"addr": 100, "words": 37}, {"addr": 300, "words": 0}, {"addr": 1020, "words": 9}]
    values = [rng.getrandbits(CONFIG.data_width) for _ in range(46)]
    writer, reader = dut.port[0], dut.port[clients - 1]
    done, moved = {}, []

    async def commands(ctx):
        await stream_send(ctx, writer.write_cmd, writes, random.Random(1), traffic.idle)

    async def words(ctx):
        await stream_send(ctx, writer.write_data, values, random.Random(2), traffic.idle)

    async def acknowledgements(ctx):
        await stream_receive(ctx, writer.write_done, len(writes), random.Random(3),
                             traffic.stall)
        done["written"] = True

    async def reads(ctx):
        while "written" not in done:
            await ctx.tick()
        await stream_send(ctx, reader.read_cmd, [{"addr": 100, "words": 37},
                                                 {"addr": 1020, "words": 9}],
                          random.Random(4), traffic.idle)

    async def read_words(ctx):
        done["read"] = await stream_receive(ctx, reader.read_data, 46, random.Random(5),
                                            traffic.stall, decode=lambda p: p.data)

    async def other_writers(ctx):
        """The other clients offer writes all along: none may move, none be answered."""
        others = dut.port[1:]
        for port in others:
            ctx.set(port.write_cmd.payload, {"addr": 100, "words": 1})
            ctx.set(port.write_cmd.valid, 1)
            ctx.set(port.write_data.payload, 0)
            ctx.set(port.write_data.valid, 1)
            ctx.set(port.write_done.ready, 1)
        signals = [s for p in others for s in (p.write_cmd.ready, p.write_data.ready,
                                               p.write_done.valid)]
        while True:
            _, _, *values = await ctx.tick().sample(*signals)
            moved.extend(value for value in values if value)

    run_simulation(dut, commands, words, acknowledgements, reads, read_words,
                   background=[other_writers, watchdog(8000)])
    assert done["read"] == values                  # no write of the others landed on 100
    assert moved == []


def test_one_client_streams_a_word_per_cycle():
    """One-word reads back to back, then longer ones: a command per cycle, a word per
    cycle, with no gap after the first word."""
    dut = SharedMemory("onchip", 2, init=range(DEPTH))
    port = dut.port[0]
    commands = ([{"addr": 3 * n, "words": 1} for n in range(24)]
                + [{"addr": 500 + 20 * n, "words": 20} for n in range(3)])
    arrivals = []

    async def send(ctx):
        await stream_send(ctx, port.read_cmd, commands)

    async def receive(ctx):
        ctx.set(port.read_data.ready, 1)
        cycle = 0
        while len(arrivals) < 84:
            _, _, valid, data = await ctx.tick().sample(port.read_data.valid,
                                                        port.read_data.payload.data)
            cycle += 1
            if valid:
                arrivals.append((cycle, data))

    run_simulation(dut, send, receive, background=[watchdog(1000)])
    first = arrivals[0][0]
    assert [cycle for cycle, _ in arrivals] == list(range(first, first + 84))
    assert [data for _, data in arrivals] == ([3 * n for n in range(24)]
                                              + list(range(500, 560)))


@pytest.mark.parametrize("kind", ["onchip", "sim"])
def test_the_arbiter_adds_its_latency(kind):
    plain, plain_port = make_memory(kind)
    shared = SharedMemory(kind, 2)
    assert (first_word_latency(shared, shared.port[1])
            == first_word_latency(plain, plain_port) + PortArbiter.LATENCY)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="at least 2 clients, not 1"):
        PortArbiter(CONFIG, 1)
    with pytest.raises(ValueError, match="at least 2 clients, not True"):
        PortArbiter(CONFIG, True)
    with pytest.raises(ValueError, match="reads_in_flight must be a positive integer, not 0"):
        PortArbiter(CONFIG, 2, reads_in_flight=0)
    with pytest.raises(TypeError, match="MemoryConfig"):
        PortArbiter(32)
