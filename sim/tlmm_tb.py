"""cocotb driver for ``sim.harness.TLMMHarness``: memory loading, jobs and results.

Shared by the cosim tests (``tests/cosim/tb_tlmm.py``) and the benchmark
(``bench/tb_tlmm_bench.py``), so both drive the harness the same way.
"""

import random

import numpy as np

from tritium.hw.layouts import act_beat_layout, tlmm_result_layout
from tritium.hw.memory.port import command_layout
from tritium.hw.weights import weight_job_layout
from .cocotb_tb import AmStreamSink, AmStreamSource, AmStreamTransaction, stream_bfm

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
        self.write_cmd = stream_bfm(dut, "load__write_cmd", AmStreamSource)
        self.write_data = stream_bfm(dut, "load__write_data", AmStreamSource)
        self.write_done = stream_bfm(dut, "load__write_done", AmStreamSink)

    async def store(self, data: bytes, base: int) -> int:
        """Write ``data`` from bus word ``base`` on; return the number of bus words."""
        width = self.memory.bytes_per_word
        data += bytes(-len(data) % width)
        count, longest = len(data) // width, 2 ** self.memory.len_width - 1
        for start in range(0, count, longest):
            words = min(longest, count - start)
            cmd = command_layout(self.memory).const({"addr": base + start, "words": words})
            await self.write_cmd.send(AmStreamTransaction(payload=cmd.as_bits()))
            for i in range(start, start + words):
                word = int.from_bytes(data[i * width:(i + 1) * width], "little")
                await self.write_data.send(AmStreamTransaction(payload=word))
            await self.write_done.recv()
        return count

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
