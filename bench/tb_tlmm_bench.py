"""cocotb side of bench/tlmm.py: time matmul jobs on the TLMM core, cycle-accurately.

Settings come in ``TLMM_BENCH_SETTINGS``; the measured cycles go to the JSON file it
names. Results are checked against the golden matmul, so a benchmark never reports
the speed of a wrong answer.
"""

import json
import os

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge
from cocotb.utils import get_sim_time

from tritium.hw.config import TLMMConfig
from tritium.hw.memory.port import MemoryConfig
from tritium.host.packer import pack_ternary
from tritium.sim.testing.cocotb_tb import reset, start_clock
from tritium.sim.testing.tlmm_tb import TLMMDriver
from tritium.sim.golden.tlmm import int_matmul

PERIOD_NS = 10


def counters(dut):
    names = ("busy_cycles", "weight_stall_cycles", "table_stall_cycles", "output_stall_cycles",
             "fetched_words", "read_words")
    return {name: int(getattr(dut, name).value) for name in names}


@cocotb.test()
async def measure(dut):
    settings = json.loads(os.environ["TLMM_BENCH_SETTINGS"])
    cfg, memory = TLMMConfig(**settings["tlmm"]), MemoryConfig(**settings["memory"])
    start_clock(dut, PERIOD_NS)
    driver = TLMMDriver(dut, cfg, memory)
    await reset(dut)
    rng = np.random.default_rng(0)
    report = []
    for case in settings["cases"]:
        n, k, tokens = case["n"], case["k"], case["tokens"]
        rows, cols = cfg.tile.padded_shape(n, k)
        weights = rng.integers(-1, 2, (n, k))
        acts = np.zeros((tokens, cols), dtype=np.int64)
        acts[:, :k] = rng.integers(-128, 128, (tokens, k))
        words = await driver.store(pack_ternary(weights, cfg.tile).data, 0)
        expected = int_matmul(acts[:, :k], weights)
        before = counters(dut)
        start = get_sim_time("ns")
        got = np.zeros((tokens, rows), dtype=np.int64)
        for first in range(0, tokens, cfg.tokens):          # one job per token tile
            tile = min(cfg.tokens, tokens - first)
            job = dict(base=0, **cfg.job_shape(n, k, tile))
            cocotb.start_soon(driver.send_job(job, acts[first:first + tile]))
            got[first:first + tile] = await driver.receive(job)
        await RisingEdge(dut.clk)
        cycles = round((get_sim_time("ns") - start) / PERIOD_NS)
        assert np.array_equal(got[:, :n], expected), f"wrong results for {case}"
        after = counters(dut)
        report.append(dict(case, cycles=cycles, packed_bus_words=words,
                           counters={key: after[key] - before[key] for key in after}))
    with open(settings["output"], "w") as out:
        json.dump(report, out)
