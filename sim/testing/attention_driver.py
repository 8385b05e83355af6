"""cocotb driver for ``sim.harness.AttentionHarness``: cache images, jobs and checked outputs.

Shared by the cosim test (``tests/cosim/tb_attention.py``) and the benchmark
(``bench/tb_attention_bench.py``), so both drive the block the same way.
"""

import random

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge
from cocotb.utils import get_sim_time

from tritium.hw.attention.block import attention_job_layout
from tritium.hw.config import AttentionConfig, ModelConfig
from tritium.hw.fixedpoint import scale_layout
from tritium.hw.memory.port import MemoryConfig
from tritium.hw.layouts import vector_beat_layout
from ..backend.backdoor import write_memory_image
from .attention_tb import output_beats, qkv_beats, random_qkv, score_scale
from .cocotb_tb import (AmStreamSink, AmStreamSource, AmStreamTransaction, MemoryLoader,
                        stream_bfm)
from ..golden.model import attention_step, rope_tables

__all__ = ["AttentionDriver"]


class AttentionDriver:
    """Bus functional models on an AttentionHarness's ports, and what a host does with them.

    ``idle`` and ``stall`` are the pause probabilities of the job/QKV sources and of the
    output sink; the load channels never pause. Times are in cycles of ``period_ns``.
    """

    def __init__(self, dut, model, cfg, memory, max_queries, idle=0.0, stall=0.0,
                 rng: random.Random = None, period_ns: int = 10, backdoor_image=None):
        self.dut, self.model, self.cfg, self.memory = dut, model, cfg, memory
        self.backdoor_image = backdoor_image
        self.max_queries = max_queries
        self.period_ns = period_ns
        rng = rng or random.Random(0)
        self.job = stream_bfm(dut, "job", AmStreamSource, idle, rng)
        self.qkv = stream_bfm(dut, "qkv", AmStreamSource, idle, rng)
        self.out = stream_bfm(dut, "out", AmStreamSink, stall, rng)
        self.loader = MemoryLoader(dut, "load", memory)
        self.job_layout = attention_job_layout(cfg, max_queries)
        self.beat_layout = vector_beat_layout(cfg.io_lanes)
        self.tables = rope_tables(model)
        dut.loading.value = 0
        if backdoor_image:
            dut.backdoor_load.value = 0

    @classmethod
    def from_settings(cls, dut, settings: dict, **options) -> "AttentionDriver":
        """A driver for the configs a test runner passed as JSON (``model``,
        ``attention``, ``memory`` as dataclass fields, and ``max_queries``)."""
        return cls(dut, ModelConfig(**settings["model"]), AttentionConfig(**settings["attention"]),
                   MemoryConfig(**settings["memory"]), settings["max_queries"],
                   backdoor_image=settings.get("backdoor_image"), **options)

    def set_score_scale(self):
        m, e = score_scale(self.model.head_dim)
        self.dut.score_scale.value = scale_layout.const({"m": int(m), "e": int(e)}).as_bits()

    def now(self) -> int:
        return int(get_sim_time("ns") // self.period_ns)

    async def store(self, images):
        """Write ``(word address, bytes)`` images through the load port, or in one cycle
        through the backdoor of a board memory (``backdoor_image``: the file it loads)."""
        if self.backdoor_image:
            write_memory_image(self.backdoor_image, images, self.memory.bytes_per_word)
            await FallingEdge(self.dut.clk)
            self.dut.backdoor_load.value = 1
            await FallingEdge(self.dut.clk)
            self.dut.backdoor_load.value = 0
            return
        self.dut.loading.value = 1
        for base, data in images:
            await self.loader.store(data, base)
        self.dut.loading.value = 0

    async def run_job(self, cache, rng, layer: int, start: int, tokens: int) -> dict:
        """One job of random QKV for ``tokens`` tokens from ``start``, checked bit for bit
        against the golden attention (which also updates ``cache``).

        Returns the cycle at which the job was sent, its last QKV beat was taken, its
        first output beat arrived and its last one arrived.
        """
        heads, keys, values = random_qkv(self.model, rng, tokens)
        positions = np.arange(start, start + tokens)
        golden = attention_step(self.model, self.tables, cache, layer, positions, heads, keys,
                                values, score_scale(self.model.head_dim))
        expected = output_beats(golden, self.cfg.io_lanes)
        times = {"start": start, "tokens": tokens, "sent": self.now()}
        job = self.job_layout.const({"layer": layer, "start": start, "tokens": tokens})
        sender = cocotb.start_soon(self._send(job, qkv_beats(heads, keys, values,
                                                             self.cfg.io_lanes), times))
        for index, want in enumerate(expected):
            got = self.beat_layout.from_bits(int((await self.out.recv()).payload))
            if index == 0:
                times["first_output"] = self.now()
            values = [int(v) for v in got.values]
            assert (values, int(got.last)) == (want["values"], want["last"]), (
                f"job at position {start} ({tokens} tokens): beat {index} is {values}, "
                f"golden {want['values']}")
        times["done"] = self.now()
        await sender
        return times

    async def _send(self, job, beats, times):
        await self.job.send(AmStreamTransaction(payload=job.as_bits()))
        for beat in beats:
            await self.qkv.send(AmStreamTransaction(payload=self.beat_layout.const(beat).as_bits()))
        await self.qkv.wait()                   # send() only queues: wait for the last beat
        times["inputs_taken"] = self.now()
