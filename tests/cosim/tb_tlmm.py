"""cocotb testbench (tier 2): the TLMM core (weight buffer manager + engine) on SimMemory.

Run by ``tests/cosim/test_tlmm_cosim.py`` with the configuration in ``TLMM_TB_SETTINGS``.
The testbench stores packed weights through the memory's write channels, runs matmul
jobs with random activations, and checks every accumulator against the golden integer
matmul; it also resets the design in the middle of a job and checks the next job.
"""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge

from tritium.hw.config import TLMMConfig
from tritium.hw.memory.port import MemoryConfig
from tritium.host.packer import pack_ternary
from tritium.sim.testing.cocotb_tb import ALL_TRAFFIC, TRAFFIC, reset, start_clock
from tritium.sim.testing.tlmm_tb import TLMMDriver
from tritium.sim.golden.tlmm import int_matmul


class TLMMTB:
    def __init__(self, dut, traffic="smooth", seed=0):
        settings = json.loads(os.environ["TLMM_TB_SETTINGS"])
        self.cfg = TLMMConfig(**settings["tlmm"])
        self.memory = MemoryConfig(**settings["memory"])
        self.shapes = settings["jobs"]
        self.rng = np.random.default_rng(seed)
        idle, stall = TRAFFIC[traffic]
        start_clock(dut)
        self.driver = TLMMDriver(dut, self.cfg, self.memory, idle, stall, random.Random(seed))
        self.next_base = 0

    async def store(self, data: bytes) -> int:
        """Write bytes at the next free bus word; return that word address."""
        base = self.next_base
        self.next_base += await self.driver.store(data, base)
        return base

    async def prepare(self, shape):
        """Random weights and activations for one job, the weights already in memory."""
        n, k, tokens = shape["n"], shape["k"], shape["tokens"]
        _, cols = self.cfg.tile.padded_shape(n, k)
        weights = self.rng.integers(-1, 2, (n, k))
        acts = np.zeros((tokens, cols), dtype=np.int64)
        acts[:, :k] = self.rng.integers(-128, 128, (tokens, k))
        if shape.get("extreme"):
            weights[:] = -1
            acts[:, :k] = -128
        base = await self.store(pack_ternary(weights, self.cfg.tile).data)
        job = dict(base=base, **self.cfg.job_shape(n, k, tokens))
        return job, acts, int_matmul(acts[:, :k], weights)

    async def run(self, shape):
        job, acts, expected = await self.prepare(shape)
        cocotb.start_soon(self.driver.send_job(job, acts))
        got = (await self.driver.receive(job))[:, :shape["n"]]
        assert np.array_equal(got, expected), (
            f"mismatch for {shape}: first differences at {np.argwhere(got != expected)[:4]}")


@cocotb.test()
@cocotb.parametrize(traffic=ALL_TRAFFIC)
async def tlmm_jobs_match_golden(dut, traffic):
    tb = TLMMTB(dut, traffic, seed=sum(map(ord, traffic)))
    await reset(dut)
    for shape in tb.shapes:
        await tb.run(shape)


@cocotb.test()
async def tlmm_extreme_values(dut):
    tb = TLMMTB(dut, seed=3)
    await reset(dut)
    await tb.run(dict(tb.shapes[0], extreme=True))


@cocotb.test()
async def tlmm_reset_in_the_middle_of_a_job(dut):
    tb = TLMMTB(dut, "both", seed=4)
    await reset(dut)
    job, acts, _ = await tb.prepare(tb.shapes[0])
    cocotb.start_soon(tb.driver.send_job(job, acts))
    for _ in range(job["chunks"] * job["row_blocks"] // 2 + 5):      # part of the job
        await RisingEdge(dut.clk)
    await reset(dut, cycles=3)
    tb.driver.job.clear()
    tb.driver.acts.clear()
    await ClockCycles(dut.clk, 2)
    assert not dut.results__valid.value, "results still valid after reset"
    await tb.run(tb.shapes[-1])
