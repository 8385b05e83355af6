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
from tritium.hw.layouts import act_beat_layout, tlmm_result_layout
from tritium.hw.memory.port import MemoryConfig, command_layout
from tritium.hw.weights import weight_job_layout
from tritium.host.packer import pack_ternary
from tritium.sim.cocotb_tb import (ALL_TRAFFIC, TRAFFIC, AmStreamSink, AmStreamSource,
                                   AmStreamTransaction, reset, start_clock, stream_bfm)
from tritium.sim.golden.tlmm import int_matmul


class TLMMTB:
    def __init__(self, dut, traffic="smooth", seed=0):
        settings = json.loads(os.environ["TLMM_TB_SETTINGS"])
        self.dut = dut
        self.cfg = TLMMConfig(**settings["tlmm"])
        self.memory = MemoryConfig(**settings["memory"])
        self.shapes = settings["jobs"]
        self.rng = np.random.default_rng(seed)
        idle, stall = TRAFFIC[traffic]
        pauses = random.Random(seed)
        start_clock(dut)
        self.job = stream_bfm(dut, "job", AmStreamSource, idle, pauses)
        self.acts = stream_bfm(dut, "acts", AmStreamSource, idle, pauses)
        self.results = stream_bfm(dut, "results", AmStreamSink, stall, pauses)
        self.write_cmd = stream_bfm(dut, "load__write_cmd", AmStreamSource)
        self.write_data = stream_bfm(dut, "load__write_data", AmStreamSource)
        self.write_done = stream_bfm(dut, "load__write_done", AmStreamSink)
        self.next_base = 0

    async def store(self, data: bytes) -> int:
        """Write bytes at the next free bus word; return that word address."""
        width = self.memory.bytes_per_word
        data += bytes(-len(data) % width)
        base, count = self.next_base, len(data) // width
        longest = 2 ** self.memory.len_width - 1
        commands = 0
        for start in range(0, count, longest):
            words = min(longest, count - start)
            cmd = command_layout(self.memory).const({"addr": base + start, "words": words})
            await self.write_cmd.send(AmStreamTransaction(payload=cmd.as_bits()))
            for i in range(start, start + words):
                word = int.from_bytes(data[i * width:(i + 1) * width], "little")
                await self.write_data.send(AmStreamTransaction(payload=word))
            commands += 1
        for _ in range(commands):
            await self.write_done.recv()
        self.next_base = base + count
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

    async def start(self, job, acts):
        layout = weight_job_layout(self.cfg, self.memory)
        await self.job.send(AmStreamTransaction(payload=layout.const(job).as_bits()))
        beat = act_beat_layout(self.cfg)
        g = self.cfg.k_per_word
        for kb in range(job["chunks"]):
            for p in range(job["tokens"]):
                values = [int(v) for v in acts[p, kb * g:(kb + 1) * g]]
                await self.acts.send(AmStreamTransaction(payload=beat.const(values).as_bits()))

    async def collect(self, job, n_real):
        layout = tlmm_result_layout(self.cfg)
        out = np.zeros((job["tokens"], job["row_blocks"] * self.cfg.rows), dtype=np.int64)
        for index in range(job["tokens"] * job["row_blocks"]):
            beat = layout.from_bits(int((await self.results.recv()).payload))
            p, rb = divmod(index, job["row_blocks"])
            out[p, rb * self.cfg.rows:(rb + 1) * self.cfg.rows] = list(beat.acc)
            expected_last = index == job["tokens"] * job["row_blocks"] - 1
            assert beat.last == expected_last, f"last flag wrong at beat {index}"
        return out[:, :n_real]

    async def run(self, shape):
        job, acts, expected = await self.prepare(shape)
        cocotb.start_soon(self.start(job, acts))
        got = await self.collect(job, shape["n"])
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
    cocotb.start_soon(tb.start(job, acts))
    for _ in range(job["chunks"] * job["row_blocks"] // 2 + 5):      # part of the job
        await RisingEdge(dut.clk)
    await reset(dut, cycles=3)
    tb.job.clear()
    tb.acts.clear()
    await ClockCycles(dut.clk, 2)
    assert not dut.results__valid.value, "results still valid after reset"
    await tb.run(tb.shapes[-1])
