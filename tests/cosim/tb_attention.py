"""cocotb testbench (tier 2): the attention block with its KV cache in SimMemory.

Run by ``tests/cosim/test_attention_cosim.py`` with the configuration in
``ATTENTION_TB_SETTINGS``: for each prompt length, the prompt is prefilled in chunks of
``max_queries`` tokens from position 0 and then decoded for a few steps; every output
value is checked against the golden model's attention, and the cycles each job takes
are written to ``ATTENTION_TB_CYCLES`` when set (``bench/attention.py`` reads them).
"""

import json
import os
import random

import cocotb
import numpy as np

from tritium.hw.attention.block import attention_job_layout
from tritium.hw.config import AttentionConfig, ModelConfig
from tritium.hw.layouts import vector_beat_layout
from tritium.sim.attention_tb import output_beats, qkv_beats, random_qkv, score_scale
from tritium.sim.cocotb_tb import (AmStreamSink, AmStreamSource, AmStreamTransaction, TRAFFIC,
                                   reset, start_clock, stream_bfm)
from tritium.sim.golden.model import GoldenCache, attention_step, rope_tables


class AttentionTB:
    def __init__(self, dut, traffic, seed):
        settings = json.loads(os.environ["ATTENTION_TB_SETTINGS"])
        self.model = ModelConfig(**settings["model"])
        self.cfg = AttentionConfig(**settings["attention"])
        self.max_queries = settings["max_queries"]
        self.sequences = settings["sequences"]
        self.rng = np.random.default_rng(seed)
        idle, stall = TRAFFIC[traffic]
        start_clock(dut)
        self.dut = dut
        pause = random.Random(seed)
        self.job = stream_bfm(dut, "job", AmStreamSource, idle, pause)
        self.qkv = stream_bfm(dut, "qkv", AmStreamSource, idle, pause)
        self.out = stream_bfm(dut, "out", AmStreamSink, stall, pause)
        self.job_layout = attention_job_layout(self.cfg, self.max_queries)
        self.beat_layout = vector_beat_layout(self.cfg.dims_per_cycle)
        self.tables = rope_tables(self.model)
        self.cycles = []

    async def run_job(self, cache, start, tokens):
        heads, keys, values = random_qkv(self.model, self.rng, tokens)
        positions = np.arange(start, start + tokens)
        expected = output_beats(attention_step(self.model, self.tables, cache, 0, positions,
                                               heads, keys, values,
                                               score_scale(self.model.head_dim)),
                                self.cfg.dims_per_cycle)
        job = self.job_layout.const({"layer": 0, "start": start, "tokens": tokens})
        begin = cocotb.utils.get_sim_time("ns")
        await self.job.send(AmStreamTransaction(payload=job.as_bits()))
        for beat in qkv_beats(heads, keys, values, self.cfg.dims_per_cycle):
            await self.qkv.send(AmStreamTransaction(
                payload=self.beat_layout.const(beat).as_bits()))
        for index, want in enumerate(expected):
            got = self.beat_layout.from_bits(int((await self.out.recv()).payload))
            values = [int(v) for v in got.values]
            assert (values, int(got.last)) == (want["values"], want["last"]), (
                f"job at position {start} ({tokens} tokens): beat {index} is {values}, "
                f"golden {want['values']}")
        self.cycles.append({"start": start, "tokens": tokens,
                            "cycles": int((cocotb.utils.get_sim_time("ns") - begin) // 10)})

    async def run_sequence(self, prompt, decode):
        cache = GoldenCache(self.model)
        for start in range(0, prompt, self.max_queries):
            await self.run_job(cache, start, min(self.max_queries, prompt - start))
        for step in range(decode):
            await self.run_job(cache, prompt + step, 1)


@cocotb.test()
async def attention_prefill_then_decode(dut):
    tb = AttentionTB(dut, os.environ.get("ATTENTION_TB_TRAFFIC", "smooth"), seed=1)
    m, e = score_scale(tb.model.head_dim)
    dut.score_scale.value = (int(e) % 1024) << 16 | int(m)
    await reset(dut)
    for prompt, decode in tb.sequences:
        await tb.run_sequence(prompt, decode)
    if os.environ.get("ATTENTION_TB_CYCLES"):
        with open(os.environ["ATTENTION_TB_CYCLES"], "w") as handle:
            json.dump(tb.cycles, handle)
