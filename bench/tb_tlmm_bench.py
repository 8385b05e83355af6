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
from tritium.hw.layouts import act_beat_layout, tlmm_result_layout
from tritium.hw.memory.port import MemoryConfig, command_layout
from tritium.hw.weights import weight_job_layout
from tritium.host.packer import pack_ternary
from tritium.sim.cocotb_tb import (AmStreamSink, AmStreamSource, AmStreamTransaction, reset,
                                   start_clock, stream_bfm)
from tritium.sim.golden.tlmm import int_matmul

PERIOD_NS = 10


async def store(tb, data: bytes, base: int):
    width = tb["memory"].bytes_per_word
    data += bytes(-len(data) % width)
    count, longest = len(data) // width, 2 ** tb["memory"].len_width - 1
    for start in range(0, count, longest):
        words = min(longest, count - start)
        cmd = command_layout(tb["memory"]).const({"addr": base + start, "words": words})
        await tb["write_cmd"].send(AmStreamTransaction(payload=cmd.as_bits()))
        for i in range(start, start + words):
            await tb["write_data"].send(AmStreamTransaction(
                payload=int.from_bytes(data[i * width:(i + 1) * width], "little")))
        await tb["write_done"].recv()
    return count


async def send_job(tb, job, acts):
    cfg = tb["cfg"]
    await tb["job"].send(AmStreamTransaction(
        payload=weight_job_layout(cfg, tb["memory"]).const(job).as_bits()))
    beat, g = act_beat_layout(cfg), cfg.k_per_word
    for kb in range(job["chunks"]):
        for p in range(job["tokens"]):
            values = [int(v) for v in acts[p, kb * g:(kb + 1) * g]]
            await tb["acts"].send(AmStreamTransaction(payload=beat.const(values).as_bits()))


def counters(dut):
    names = ("busy_cycles", "weight_stall_cycles", "table_stall_cycles", "output_stall_cycles",
             "fetched_words", "read_words")
    return {name: int(getattr(dut, name).value) for name in names}


@cocotb.test()
async def measure(dut):
    settings = json.loads(os.environ["TLMM_BENCH_SETTINGS"])
    cfg, memory = TLMMConfig(**settings["tlmm"]), MemoryConfig(**settings["memory"])
    start_clock(dut, PERIOD_NS)
    tb = {"cfg": cfg, "memory": memory,
          "job": stream_bfm(dut, "job", AmStreamSource),
          "acts": stream_bfm(dut, "acts", AmStreamSource),
          "results": stream_bfm(dut, "results", AmStreamSink),
          "write_cmd": stream_bfm(dut, "load__write_cmd", AmStreamSource),
          "write_data": stream_bfm(dut, "load__write_data", AmStreamSource),
          "write_done": stream_bfm(dut, "load__write_done", AmStreamSink)}
    await reset(dut)
    rng = np.random.default_rng(0)
    layout = tlmm_result_layout(cfg)
    report = []
    for case in settings["cases"]:
        n, k, tokens = case["n"], case["k"], case["tokens"]
        rows, cols = cfg.tile.padded_shape(n, k)
        weights = rng.integers(-1, 2, (n, k))
        acts = np.zeros((tokens, cols), dtype=np.int64)
        acts[:, :k] = rng.integers(-128, 128, (tokens, k))
        words = await store(tb, pack_ternary(weights, cfg.tile).data, 0)
        expected = int_matmul(acts[:, :k], weights)
        before = counters(dut)
        start = get_sim_time("ns")
        got = np.zeros((tokens, rows), dtype=np.int64)
        for first in range(0, tokens, cfg.tokens):          # one job per token tile
            tile = min(cfg.tokens, tokens - first)
            job = dict(base=0, **cfg.job_shape(n, k, tile))
            cocotb.start_soon(send_job(tb, job, acts[first:first + tile]))
            for index in range(tile * job["row_blocks"]):
                beat = layout.from_bits(int((await tb["results"].recv()).payload))
                p, rb = divmod(index, job["row_blocks"])
                got[first + p, rb * cfg.rows:(rb + 1) * cfg.rows] = list(beat.acc)
        await RisingEdge(dut.clk)
        cycles = round((get_sim_time("ns") - start) / PERIOD_NS)
        assert np.array_equal(got[:, :n], expected), f"wrong results for {case}"
        after = counters(dut)
        report.append(dict(case, cycles=cycles, packed_bus_words=words,
                           counters={key: after[key] - before[key] for key in after}))
    with open(settings["output"], "w") as out:
        json.dump(report, out)
