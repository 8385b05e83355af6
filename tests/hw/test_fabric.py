# amaranth: UnusedElaboratable=no
"""Tier 1: the board ports (amaranth.sim): the TLMM's weight port striped across the four
ports of a KV260 board memory and the units' port across the first two, at once.

Both clients reading at the same time, with gaps and back-pressure, get exactly their
own words in order (the weight port's words two bus words wide), and no port stalls for
good however the two interleave; the units' writes read back through the weight port;
the ports' latencies are what the performance model takes.
"""

import dataclasses
import random

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.hw.memory import BoardMemory, MemoryPortSignature
from tritium.hw.memory.arbiter import PortArbiter
from tritium.hw.memory.fabric import BoardPorts
from tritium.hw.memory.stripe import PortStriper
from tritium.hw.memory_model import MEMORY_MODELS
from tritium.sim.testing.amaranth_tb import (TRAFFIC, run_simulation, stream_receive,
                                             stream_send, watchdog)

# The tiny design's 256-bit bus with the kv260 preset's ports: four, a 512-bit weight port.
CONFIG = dataclasses.replace(ACCELERATOR_PRESETS["tiny"], memory_ports=4, weight_port_words=2)
DEPTH = 4096
CHUNK = 8                                   # 16 HP beats: one burst
BUS_MASK = (1 << CONFIG.data_width) - 1


class PortsOnMemory(wiring.Component):
    """BoardPorts on a BoardMemory of the kv260 model: the two ports as the top sees them."""

    def __init__(self, init):
        self.ports = BoardPorts(CONFIG, CHUNK)
        self.memory = BoardMemory(CONFIG.memory, DEPTH, MEMORY_MODELS["kv260"],
                                  CONFIG.clock_hz, ports=CONFIG.memory_ports, init=init)
        super().__init__({"units": In(MemoryPortSignature(CONFIG.memory)),
                          "weights": In(MemoryPortSignature(CONFIG.weight_memory))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.ports, m.submodules.memory = self.ports, self.memory
        wiring.connect(m, wiring.flipped(self.units), self.ports.units)
        wiring.connect(m, wiring.flipped(self.weights), self.ports.weights)
        for inner, outer in zip(self.ports.memory, self.memory.port):
            wiring.connect(m, inner, outer)
        return m


def reads(rng, count, depth, longest):
    return [{"addr": rng.randrange(depth), "words": rng.choice([0, 1, 2, rng.randrange(longest)])}
            for _ in range(count)]


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_both_ports_read_at_once_and_get_their_own_words(traffic):
    rng = random.Random(f"fabric-{traffic}")
    init = [rng.getrandbits(CONFIG.data_width) for _ in range(DEPTH)]
    dut = PortsOnMemory(init)
    unit_reads = reads(rng, 30, DEPTH, 70)
    weight_reads = reads(rng, 30, DEPTH // 2, 40)
    unit_words = [(init[(c["addr"] + i) % DEPTH], i == c["words"] - 1)
                  for c in unit_reads for i in range(c["words"])]
    weight_words = [(init[2 * ((c["addr"] + i) % (DEPTH // 2))]
                     | init[2 * ((c["addr"] + i) % (DEPTH // 2)) + 1] << CONFIG.data_width,
                     i == c["words"] - 1)
                    for c in weight_reads for i in range(c["words"])]
    got = {}

    def reader(name, commands, count, seed):
        port = getattr(dut, name)

        async def send(ctx):
            await stream_send(ctx, port.read_cmd, commands, random.Random(seed), traffic.idle)

        async def receive(ctx):
            got[name] = await stream_receive(ctx, port.read_data, count,
                                             random.Random(seed + 1), traffic.stall,
                                             decode=lambda p: (p.data, bool(p.last)))
        return send, receive

    run_simulation(dut, *reader("units", unit_reads, len(unit_words), 1),
                   *reader("weights", weight_reads, len(weight_words), 3),
                   background=[watchdog(60_000)])
    assert got["units"] == unit_words
    assert got["weights"] == weight_words


def test_the_units_writes_read_back_through_the_weight_port():
    rng = random.Random("fabric-write")
    dut = PortsOnMemory(())
    values = [rng.getrandbits(CONFIG.data_width) for _ in range(40)]
    got = {}

    async def write(ctx):
        await stream_send(ctx, dut.units.write_cmd, [{"addr": 200, "words": 40}])

    async def data(ctx):
        await stream_send(ctx, dut.units.write_data, values)

    async def read(ctx):
        await stream_receive(ctx, dut.units.write_done, 1)
        await stream_send(ctx, dut.weights.read_cmd, [{"addr": 100, "words": 20}])
        words = await stream_receive(ctx, dut.weights.read_data, 20, decode=lambda p: p.data)
        got["halves"] = [half for word in words
                         for half in (word & BUS_MASK, word >> CONFIG.data_width)]

    run_simulation(dut, write, data, read, background=[watchdog(10_000)])
    assert got["halves"] == values


def test_the_ports_latency_is_the_stripers_and_the_arbiters():
    one_port = dataclasses.replace(CONFIG, memory_ports=1, weight_port_words=1,
                                  kv_reads="units")
    two_ports = dataclasses.replace(CONFIG, memory_ports=2, weight_port_words=1,
                                    kv_reads="units")
    assert BoardPorts.latency(one_port) == {"units": 0, "weights": 0}
    assert BoardPorts.latency(two_ports) == {"units": PortStriper.LATENCY,
                                             "weights": PortStriper.LATENCY}
    both = PortStriper.LATENCY + PortArbiter.LATENCY
    assert BoardPorts.latency(CONFIG) == {"units": both, "weights": both}


def test_long_reads_on_both_ports_at_once_never_stall_for_good():
    """Both clients stream long reads at once and take their words only now and then, so
    each port's words alternate between them: each striper keeps no more chunks in flight
    than its buffers hold, so every word has room and both reads finish."""
    init = list(range(DEPTH))
    dut = PortsOnMemory(init)
    got = {}

    async def units(ctx):
        await stream_send(ctx, dut.units.read_cmd, [{"addr": 0, "words": 1024}])

    async def weights(ctx):
        await stream_send(ctx, dut.weights.read_cmd, [{"addr": 1024, "words": 512}])

    async def take_units(ctx):
        got["units"] = await stream_receive(ctx, dut.units.read_data, 1024,
                                            random.Random(1), 0.7, decode=lambda p: p.data)

    async def take_weights(ctx):
        got["weights"] = await stream_receive(ctx, dut.weights.read_data, 512,
                                              random.Random(2), 0.7, decode=lambda p: p.data)

    run_simulation(dut, units, weights, take_units, take_weights, background=[watchdog(20_000)])
    assert got["units"] == list(range(1024))
    assert got["weights"] == [(2 * a) | (2 * a + 1) << CONFIG.data_width
                              for a in range(1024, 1536)]
