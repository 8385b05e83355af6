"""cocotb driver for ``sim.harness.TLMMHarness``: memory loading, jobs and results.

Shared by the cosim tests (``tests/cosim/tb_tlmm.py``) and the benchmark
(``bench/tb_tlmm_bench.py``), so both drive the harness the same way.
"""

import random

import numpy as np

from tritium.hw.layouts import act_beat_layout, tlmm_result_layout
from tritium.hw.weights import weight_job_layout
from .cocotb_tb import (AmStreamSink, AmStreamSource, AmStreamTransaction, MemoryLoader,
                        stream_bfm)

__all__ = ["TLMMDriver"]


class TLMMDriver:
    """Bus functional models on a TLMMHarness's ports, and what a host does with them.

    ``idle`` and ``stall`` are the pause probabilities of the job/activation sources
    and of the result sink; the memory-loading channels never pause.
    """

    def __init__(self, dut, cfg, memory, idle=0.0, stall=0.0, rng: random.Random = None):
        self.cfg, self.memory = cfg, memory
        rng = rng or random.Random(0)
        self.job = stream_bfm(dut, "job", AmStreamSource, idle, rng)
        self.acts = stream_bfm(dut, "acts", AmStreamSource, idle, rng)
        self.results = stream_bfm(dut, "results", AmStreamSink, stall, rng)
        self.loader = MemoryLoader(dut, "load", memory)

    async def store(self, data: bytes, base: int) -> int:
        """Write ``data`` from bus word ``base`` on; return the number of bus words."""
        return await self.loader.store(data, base)

    async def send_job(self, job: dict, acts: np.ndarray):
        """Send a job, then its activation beats in (K-chunk, token) order."""
        layout = weight_job_layout(self.cfg, self.memory)
        await self.job.send(AmStreamTransaction(payload=layout.const(job).as_bits()))
        beat, g = act_beat_layout(self.cfg), self.cfg.k_per_word
        for kb in range(job["chunks"]):
            for p in range(job["tokens"]):
                values = [int(v) for v in acts[p, kb * g:(kb + 1) * g]]
                await self.acts.send(AmStreamTransaction(payload=beat.const(values).as_bits()))

    async def receive(self, job: dict) -> np.ndarray:
        """The job's accumulators, (tokens, row_blocks * R); checks the ``last`` flags."""
        layout = tlmm_result_layout(self.cfg)
        rows = self.cfg.rows
        out = np.zeros((job["tokens"], job["row_blocks"] * rows), dtype=np.int64)
        beats = job["tokens"] * job["row_blocks"]
        for index in range(beats):
            beat = layout.from_bits(int((await self.results.recv()).payload))
            p, rb = divmod(index, job["row_blocks"])
            out[p, rb * rows:(rb + 1) * rows] = list(beat.acc)
            assert beat.last == (index == beats - 1), f"last flag wrong at beat {index}"
        return out
