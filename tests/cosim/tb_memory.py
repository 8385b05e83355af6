"""cocotb testbenches (tier 2) for the memory ports: SimMemory and AXI4Master as Verilog.

Run by ``tests/cosim/test_memory_cosim.py``, which builds one Verilog file per DUT and
passes its settings (geometry, initial contents, bandwidth) in ``MEMORY_TB_SETTINGS``.
Tests named ``sim_*`` drive a SimMemory, ``axi_*`` an AXI4Master in front of
``cocotbext.axi.AxiRam``. Port streams use cocotbext-axi's generic valid/ready BFMs.
"""

import json
import logging
import os
import random
from fractions import Fraction

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiRam

from tritium.hw.memory.port import MemoryConfig, command_layout
from tritium.sim.testing.cocotb_tb import (ALL_TRAFFIC, TRAFFIC, AmStreamSink, AmStreamSource,
                                   AmStreamTransaction, random_pauses, reset, start_clock,
                                   stream_bfm)

def settings():
    return json.loads(os.environ["MEMORY_TB_SETTINGS"])


class PortTB:
    """Clock, reset and the five port streams of a memory DUT."""

    def __init__(self, dut, traffic="smooth", seed=0):
        self.dut = dut
        self.settings = settings()
        self.config = MemoryConfig(**self.settings["config"])
        self.rng = random.Random(seed)
        start_clock(dut)
        idle, stall = TRAFFIC[traffic]

        def bfm(name, cls, pause):
            return stream_bfm(dut, f"port__{name}", cls, pause, random.Random(self.rng.random()))

        self.read_cmd = bfm("read_cmd", AmStreamSource, idle)
        self.read_data = bfm("read_data", AmStreamSink, stall)
        self.write_cmd = bfm("write_cmd", AmStreamSource, idle)
        self.write_data = bfm("write_data", AmStreamSource, idle)
        self.write_done = bfm("write_done", AmStreamSink, stall)

    async def reset(self, cycles=2):
        await reset(self.dut, cycles)

    def command(self, addr, words):
        bits = command_layout(self.config).const({"addr": addr, "words": words}).as_bits()
        return AmStreamTransaction(payload=bits)

    async def read(self, commands):
        """Read (addr, words) commands; return the (word, last) pairs received."""
        for addr, words in commands:
            await self.read_cmd.send(self.command(addr, words))
        mask = (1 << self.config.data_width) - 1
        received = []
        for _ in range(sum(words for _, words in commands)):
            payload = int((await self.read_data.recv()).payload)
            received.append((payload & mask, payload >> self.config.data_width))
        return received

    async def write(self, commands):
        """Write (addr, [words]) commands and wait for one write_done each."""
        for addr, words in commands:
            await self.write_cmd.send(self.command(addr, len(words)))
            for word in words:
                await self.write_data.send(AmStreamTransaction(payload=word))
        for _ in commands:
            await self.write_done.recv()

    def random_words(self, count):
        return [self.rng.getrandbits(self.config.data_width) for _ in range(count)]


def expected_reads(contents, commands):
    return [(contents.get(addr + offset, 0), int(offset == words - 1))
            for addr, words in commands for offset in range(words)]


def random_commands(rng, count, limit, longest):
    return [(rng.randrange(limit - longest), rng.choice([1, rng.randint(1, longest)]))
            for _ in range(count)]


# --- SimMemory --------------------------------------------------------------------------

def sim_contents():
    return dict(enumerate(settings()["init"]))


@cocotb.test()
@cocotb.parametrize(traffic=ALL_TRAFFIC)
async def sim_reads_under_back_pressure(dut, traffic):
    tb = PortTB(dut, traffic, seed=len(traffic))
    await tb.reset()
    # Reads stay in the lower half: the write test below changes the upper half.
    commands = random_commands(tb.rng, 12, tb.settings["depth"] // 2, 80) + [(3, 1)]
    assert await tb.read(commands) == expected_reads(sim_contents(), commands)
    await ClockCycles(dut.clk, 2)
    assert dut.read_words.value == sum(words for _, words in commands)


@cocotb.test()
async def sim_reset_in_the_middle_of_a_burst(dut):
    tb = PortTB(dut, "backpressure", seed=5)
    await tb.reset()
    await tb.read_cmd.send(tb.command(100, 400))
    await tb.read_cmd.send(tb.command(600, 50))          # queued behind the first
    for _ in range(60):
        await tb.read_data.recv()
    await tb.reset(cycles=3)
    tb.read_data.clear()

    # Idle after reset: nothing left of either command comes out.
    idle_cycles = tb.settings["latency"] + 40
    for _ in range(idle_cycles):
        await RisingEdge(dut.clk)
        assert not dut.port__read_data__valid.value
        assert not dut.port__write_done__valid.value
    assert dut.read_words.value == 0
    assert tb.read_data.empty()

    commands = [(1000, 70), (8, 1)]
    assert await tb.read(commands) == expected_reads(sim_contents(), commands)


async def count_burst_cycles(tb, words):
    """Cycles between the first and the last word of a ``words``-word read, ready held high."""
    dut = tb.dut
    tb.read_data.clear_pause_generator()
    await tb.read_cmd.send(tb.command(0, words))
    seen, cycle, first = 0, 0, None
    while seen < words:
        await RisingEdge(dut.clk)
        cycle += 1
        if dut.port__read_data__valid.value and dut.port__read_data__ready.value:
            first = cycle if first is None else first
            seen += 1
    tb.read_data.clear()
    return cycle - first


@cocotb.test()
async def sim_sustained_bandwidth(dut):
    tb = PortTB(dut, "smooth")
    await tb.reset()
    words = 1000
    cycles = await count_burst_cycles(tb, words)
    rate = Fraction(tb.settings["bytes_per_cycle"])
    measured = (words - 1) * tb.config.bytes_per_word / cycles
    dut._log.info("SimMemory sustained read: %.4f B/cycle for %s = %.4f B/cycle configured",
                  measured, rate, float(rate))
    assert abs(measured / float(rate) - 1) < 0.02


@cocotb.test()
async def sim_writes_then_reads_back(dut):
    tb = PortTB(dut, "both", seed=9)
    await tb.reset()
    half = tb.settings["depth"] // 2
    lengths = [1, 50, tb.rng.randint(2, 49), 17, 1, 33]
    writes = [(half + tb.rng.randrange(half - 50), tb.random_words(n)) for n in lengths]
    contents = sim_contents()
    for addr, words in writes:
        contents.update(zip(range(addr, addr + len(words)), words))
    await tb.write(writes)
    reads = [(addr, len(words)) for addr, words in writes]
    assert await tb.read(reads) == expected_reads(contents, reads)


# --- AXI4Master against cocotbext.axi.AxiRam ---------------------------------------------

class AxiTB(PortTB):
    """A PortTB with an AxiRam on the DUT's AXI4 master interface."""

    def __init__(self, dut, traffic="smooth", seed=0):
        super().__init__(dut, traffic, seed)
        self.ram_bytes = 2 ** len(dut.axi__araddr)
        self.ram = AxiRam(AxiBus.from_prefix(dut, "axi", bus_separator="__"), dut.clk, dut.rst,
                          size=self.ram_bytes)
        for interface in (self.ram.read_if, self.ram.write_if):
            interface.log.setLevel(logging.WARNING)
        idle, stall = TRAFFIC[traffic]
        ram_rng = random.Random(seed + 1000)
        for channel, probability in ((self.ram.read_if.ar_channel, stall),
                                     (self.ram.read_if.r_channel, idle),
                                     (self.ram.write_if.aw_channel, stall),
                                     (self.ram.write_if.w_channel, stall),
                                     (self.ram.write_if.b_channel, idle)):
            channel.set_pause_generator(random_pauses(random.Random(ram_rng.random()),
                                                      probability))

        self.bursts, self.burst_violations = [], []
        cocotb.start_soon(self._watch_bursts())

    async def _watch_bursts(self):
        """Record every AR/AW burst and any that breaks the AXI4 rules the master promises."""
        dut, size = self.dut, self.config.bytes_per_word
        while True:
            await RisingEdge(dut.clk)
            for channel in ("ar", "aw"):
                if not (getattr(dut, f"axi__{channel}valid").value and
                        getattr(dut, f"axi__{channel}ready").value):
                    continue
                addr = int(getattr(dut, f"axi__{channel}addr").value)
                beats = int(getattr(dut, f"axi__{channel}len").value) + 1
                burst = (channel, addr, beats)
                self.bursts.append(burst)
                if (addr // 4096 != (addr + beats * size - 1) // 4096 or addr % size or
                        int(getattr(dut, f"axi__{channel}size").value) != size.bit_length() - 1
                        or int(getattr(dut, f"axi__{channel}burst").value) != 1):
                    self.burst_violations.append(burst)

    def ram_word(self, addr):
        size = self.config.bytes_per_word
        return int.from_bytes(self.ram.read(addr * size, size), "little")


@cocotb.test()
@cocotb.parametrize(traffic=ALL_TRAFFIC)
async def axi_random_reads(dut, traffic):
    tb = AxiTB(dut, traffic, seed=len(traffic) + 20)
    await tb.reset()
    tb.ram.write(0, tb.rng.randbytes(tb.ram_bytes))
    words_in_4k = 4096 // tb.config.bytes_per_word
    commands = random_commands(tb.rng, 10, 4 * words_in_4k, 300)
    commands += [(words_in_4k - 3, 7), (2 * words_in_4k - 100, 600), (5, 1)]
    contents = {addr: tb.ram_word(addr) for addr in range(6 * words_in_4k)}
    assert await tb.read(commands) == expected_reads(contents, commands)
    assert not dut.error.value
    assert tb.burst_violations == []
    assert max(beats for _, _, beats in tb.bursts) == 256


@cocotb.test()
@cocotb.parametrize(traffic=["smooth", "both"])
async def axi_random_writes_then_reads(dut, traffic):
    tb = AxiTB(dut, traffic, seed=len(traffic) + 40)
    await tb.reset()
    words_in_4k = 4096 // tb.config.bytes_per_word
    writes = [(addr, tb.random_words(words))
              for addr, words in random_commands(tb.rng, 8, 4 * words_in_4k, 300)]
    writes.append((words_in_4k - 2, tb.random_words(5)))
    writes.append((9, []))                               # zero words: answered, no burst
    contents = {}
    for addr, words in writes:
        contents.update(zip(range(addr, addr + len(words)), words))
    await tb.write(writes)
    assert all(tb.ram_word(addr) == word for addr, word in contents.items())
    reads = [(addr, len(words)) for addr, words in writes if words]
    assert await tb.read(reads) == expected_reads(contents, reads)
    assert not dut.error.value
    assert tb.burst_violations == []
