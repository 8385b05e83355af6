# amaranth: UnusedElaboratable=no
"""Tier 2: the TLMM core on SimMemory as generated Verilog under cocotb (Verilator).

Six configurations cover both table modes, G = 2 and 3, decode (one token) and
prefill (token tiles), and full-size rows (K = 1536 and K = 4096, the latter padded
to the tile); each runs random jobs under four traffic patterns, extreme values, and
a reset in the middle of a job.
"""

import dataclasses
import json
from pathlib import Path

import pytest
from cocotb_tools.runner import get_results

from tritium.hw.config import TLMMConfig
from tritium.hw.memory.port import MemoryConfig
from tritium.sim.backend.cosim import run_cocotb
from tritium.sim.testing.harness import TLMMHarness

pytestmark = pytest.mark.cosim

TB_DIR = Path(__file__).parent
MEMORY = MemoryConfig(data_width=64, addr_width=16, len_width=10)

# (engine config, job shapes: N x K for `tokens` tokens)
CASES = {
    "decode-g3-full-k1536": (
        TLMMConfig(group=3, tables=4, rows=4, table_mode="full", tokens=1, max_k=1536, max_n=16),
        [{"n": 16, "k": 1536, "tokens": 1}, {"n": 5, "k": 100, "tokens": 1}]),
    "decode-g3-half-k4096": (
        TLMMConfig(group=3, tables=4, rows=2, table_mode="half", tokens=1, max_k=4104, max_n=8),
        [{"n": 8, "k": 4096, "tokens": 1}, {"n": 3, "k": 30, "tokens": 1}]),
    "decode-g2-half-k4096": (
        TLMMConfig(group=2, tables=8, rows=2, table_mode="half", tokens=1, max_k=4096, max_n=4),
        [{"n": 4, "k": 4096, "tokens": 1}]),
    "prefill-g2-full": (
        TLMMConfig(group=2, tables=4, rows=4, table_mode="full", tokens=4, max_k=256, max_n=32),
        [{"n": 32, "k": 256, "tokens": 4}, {"n": 9, "k": 40, "tokens": 3}]),
    "prefill-g3-half": (
        TLMMConfig(group=3, tables=2, rows=8, table_mode="half", tokens=8, max_k=96, max_n=64),
        [{"n": 64, "k": 96, "tokens": 8}, {"n": 20, "k": 50, "tokens": 5}]),
    "prefill-g3-full-k1536": (
        TLMMConfig(group=3, tables=8, rows=4, table_mode="full", tokens=2, max_k=1536, max_n=8),
        [{"n": 8, "k": 1536, "tokens": 2}, {"n": 4, "k": 24, "tokens": 1}]),
    # Tables in LUT-RAM (asynchronous read ports in the Verilog), two copies of each
    # table (rows > lookup.ROWS_PER_COPY), sweeps shorter and longer than a table write.
    "prefill-g3-full-lutram": (
        TLMMConfig(group=3, tables=2, rows=10, table_mode="full", tokens=2, max_k=192,
                   max_n=400, table_storage="lutram"),
        [{"n": 400, "k": 192, "tokens": 2}, {"n": 30, "k": 40, "tokens": 1}]),
}


@pytest.mark.parametrize("name", CASES)
def test_tlmm_core_cosim(name, tmp_path, monkeypatch):
    config, jobs = CASES[name]
    harness = TLMMHarness(config, MEMORY, depth=4096, bytes_per_cycle=16, latency=20, burst=32)
    settings = {"tlmm": dataclasses.asdict(config), "memory": dataclasses.asdict(MEMORY),
                "jobs": jobs}
    monkeypatch.syspath_prepend(str(TB_DIR))
    results = run_cocotb(harness, toplevel=f"tlmm_{name.replace('-', '_')}",
                         test_module="tb_tlmm", build_dir=tmp_path,
                         extra_env={"TLMM_TB_SETTINGS": json.dumps(settings)})
    assert get_results(results) == (6, 0)
