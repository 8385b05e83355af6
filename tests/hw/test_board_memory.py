# amaranth: UnusedElaboratable=no
"""Tier 1: the board memory model with several ports (amaranth.sim), and its parameters.

The single-port behaviour (reads, writes, zero-word commands, every traffic pattern) is
covered with the other memories in test_memory.py; here: ports that share storage and
bandwidth, each port's latency, and the sustained rates of the ``kv260`` model.
"""

import random
from fractions import Fraction

import pytest

from tritium.hw.memory import SIM_MEMORY_PIPELINE_CYCLES, BoardMemory, MemoryConfig
from tritium.hw.memory_model import (MEMORY_MODELS, MemoryModel, PortGroup, PortModel,
                                     memory_model)
from tritium.sim.testing.amaranth_tb import (TRAFFIC, run_simulation, stream_receive, stream_send,
                                      watchdog)

KV260 = MEMORY_MODELS["kv260"]
CLOCK = 250_000_000
# 256-bit words, the kv260 preset's bus: an HP port moves one every 2.02 cycles.
WIDE = MemoryConfig(data_width=256, addr_width=12, len_width=12)


def stream_reads(dut, ports, words, stall=0.0, max_cycles=20000):
    """Each of ``ports`` reads ``words`` words in commands of 16; returns the cycle each
    port's words arrived at and the port's ``read_words`` counter at the end, per port."""
    arrivals, counted = {i: [] for i in ports}, {}

    def sender(i):
        async def bench(ctx):
            commands = [{"addr": 1024 * i + 16 * n, "words": 16} for n in range(words // 16)]
            await stream_send(ctx, dut.port[i].read_cmd, commands)
        return bench

    def receiver(i):
        async def bench(ctx):
            rng, cycle = random.Random(i), 0
            while len(arrivals[i]) < words:
                ready = rng.random() >= stall
                ctx.set(dut.port[i].read_data.ready, ready)
                _, _, valid = await ctx.tick().sample(dut.port[i].read_data.valid)
                cycle += 1
                if valid and ready:
                    arrivals[i].append(cycle)
            counted[i] = ctx.get(dut.read_words[i])
        return bench

    benches = [sender(i) for i in ports] + [receiver(i) for i in ports]
    run_simulation(dut, *benches, background=[watchdog(max_cycles)])
    return arrivals, counted


@pytest.mark.parametrize("used", [1, 2, 3, 4])
def test_kv260_model_sustains_the_measured_rates(used):
    """Every port streams: together they move what the model says (3.96 / 7.92 / 11.61 /
    13.33 GB/s at 250 MHz), within 2%."""
    dut = BoardMemory(WIDE, 4096, KV260, CLOCK, ports=used)
    words = 480
    arrivals, _ = stream_reads(dut, range(used), words)
    start = max(times[0] for times in arrivals.values())
    end = min(times[-1] for times in arrivals.values())
    moved = sum(sum(start <= t <= end for t in times) for times in arrivals.values())
    measured = moved * WIDE.bytes_per_word / (end - start + 1)
    expected = KV260.sustained_bytes_per_cycle(used, CLOCK, WIDE.bytes_per_word)
    assert abs(measured / float(expected) - 1) < 0.02
    gigabytes = float(expected) * CLOCK / 1e9
    assert gigabytes == pytest.approx([3.96, 7.92, 11.61, 13.33][used - 1])


def test_each_port_has_its_latency():
    model = MemoryModel("lat", ports=(PortModel("a", latency_ns=7), PortModel("b", latency_ns=30)))
    dut = BoardMemory(MemoryConfig(32, 10, 8), 1024, model, clock_hz=1_000_000_000, ports=2)
    issued, first = {}, {}

    def reader(i):
        async def bench(ctx):
            port = dut.port[i]
            ctx.set(port.read_cmd.payload, {"addr": 5, "words": 2})
            ctx.set(port.read_cmd.valid, 1)
            ctx.set(port.read_data.ready, 1)
            cycle = 0
            while True:
                _, _, cmd_ready, valid = await ctx.tick().sample(port.read_cmd.ready,
                                                                port.read_data.valid)
                cycle += 1
                if cmd_ready and i not in issued:
                    issued[i] = cycle
                    ctx.set(port.read_cmd.valid, 0)
                if valid:
                    first[i] = cycle
                    return
        return bench

    run_simulation(dut, reader(0), reader(1), background=[watchdog(200)])
    assert first[0] - issued[0] == 7 + SIM_MEMORY_PIPELINE_CYCLES
    assert first[1] - issued[1] == 30 + SIM_MEMORY_PIPELINE_CYCLES


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_ports_share_one_storage(traffic):
    """Port 1 writes while port 0 reads other words; then each reads what the other wrote."""
    config = MemoryConfig(data_width=32, addr_width=10, len_width=8)
    rng = random.Random(f"share-{traffic}")
    init = [rng.getrandbits(32) for _ in range(512)]
    dut = BoardMemory(config, 1024, KV260, clock_hz=100_000_000, ports=2, init=init)
    written = [rng.getrandbits(32) for _ in range(40)]
    result = {}

    async def writer(ctx):
        port = dut.port[1]
        await stream_send(ctx, port.write_cmd, [{"addr": 600, "words": 40}],
                          random.Random(1), traffic.idle)

    async def write_words(ctx):
        await stream_send(ctx, dut.port[1].write_data, written, random.Random(2), traffic.idle)

    async def write_done(ctx):
        await stream_receive(ctx, dut.port[1].write_done, 1, random.Random(3), traffic.stall)
        result["written"] = True

    async def early_reads(ctx):
        await stream_send(ctx, dut.port[0].read_cmd, [{"addr": 10, "words": 30}],
                          random.Random(4), traffic.idle)
        while "written" not in result:
            await ctx.tick()
        await stream_send(ctx, dut.port[0].read_cmd, [{"addr": 600, "words": 40}],
                          random.Random(5), traffic.idle)

    async def read_words(ctx):
        got = await stream_receive(ctx, dut.port[0].read_data, 70, random.Random(6),
                                   traffic.stall, decode=lambda p: p.data)
        result["reads"] = got

    run_simulation(dut, writer, write_words, write_done, early_reads, read_words,
                   background=[watchdog(5000)])
    assert result["reads"] == init[10:40] + written


def test_word_counters_count_each_port():
    dut = BoardMemory(WIDE, 4096, KV260, CLOCK, ports=3)
    _, counted = stream_reads(dut, [0, 2], 64)
    assert counted == {0: 64, 2: 64}


def test_models_validate_their_figures():
    with pytest.raises(ValueError, match="bytes_per_second"):
        PortModel("x", bytes_per_second=-1)
    with pytest.raises(ValueError, match="unknown ports"):
        MemoryModel("m", ports=(PortModel("a"),), groups=(PortGroup(("a", "b"), 1e9),))
    with pytest.raises(ValueError, match="two or more"):
        PortGroup(("a",), 1e9)
    with pytest.raises(ValueError, match="unknown memory model 'ddr9'; known: kv260, onchip"):
        memory_model("ddr9")
    with pytest.raises(ValueError, match="has 4 ports; cannot use 5"):
        BoardMemory(WIDE, 64, KV260, CLOCK, ports=5)
    with pytest.raises(ValueError, match="backdoor storage starts empty"):
        BoardMemory(WIDE, 64, KV260, CLOCK, storage="backdoor", init=[1])


def test_a_port_runs_on_the_design_clock():
    """At 100 MHz an HP port is bus-bound (16 B/cycle), not DDR-bound."""
    assert KV260.port_bytes_per_cycle(0, 100_000_000, 32) == 16
    assert KV260.port_bytes_per_cycle(0, 250_000_000, 32) == Fraction(396, 25)
    assert KV260.port_bytes_per_cycle(0, 250_000_000, 8) == 8
    assert KV260.latency_cycles(0, 250_000_000) == 40
