# amaranth: UnusedElaboratable=no
"""Tier 2: SimMemory and AXI4Master as generated Verilog under cocotb (Verilator by default).

One Verilator build per DUT; the cocotb tests in ``tb_memory.py`` run inside it
(``sim_*`` for SimMemory, ``axi_*`` for AXI4Master against cocotbext-axi's AxiRam).
"""

import dataclasses
import json
import random
from fractions import Fraction
from pathlib import Path

import pytest
from cocotb_tools.runner import get_results

from tritium.hw.memory import AXI4Master, MemoryConfig, SimMemory
from tritium.sim.backend.cosim import run_cocotb

pytestmark = pytest.mark.cosim

TB_DIR = Path(__file__).parent


def run_memory_tb(component, *, toplevel, tests, count, build_dir, settings, monkeypatch):
    """Build ``component`` as ``toplevel``; run the ``count`` cocotb tests named ``tests*``."""
    # The runner hands the simulator our sys.path as PYTHONPATH (it overrides extra_env's),
    # so put tb_memory's folder there for the duration of the test.
    monkeypatch.syspath_prepend(str(TB_DIR))
    env = {"MEMORY_TB_SETTINGS": json.dumps(settings),
           "COCOTB_TEST_FILTER": rf"tb_memory\.{tests}"}
    results = run_cocotb(component, toplevel=toplevel, test_module="tb_memory",
                         build_dir=build_dir, extra_env=env)
    # A failing cocotb test already failed this test; make sure the filter ran them all.
    assert get_results(results) == (count, 0)


def test_sim_memory_cosim(tmp_path, monkeypatch):
    config = MemoryConfig(data_width=64, addr_width=12, len_width=12)
    depth = 2048
    rng = random.Random(2024)
    init = [rng.getrandbits(config.data_width) for _ in range(depth)]
    # 12.8 GB/s at 250 MHz is 51.2 B/cycle; on this 8-byte port take a tenth of it.
    bytes_per_cycle, latency = Fraction(512, 100), 24
    dut = SimMemory(config, depth, bytes_per_cycle=bytes_per_cycle, latency=latency, init=init)
    settings = {"config": dataclasses.asdict(config), "depth": depth, "init": init,
                "latency": latency, "bytes_per_cycle": str(bytes_per_cycle)}
    run_memory_tb(dut, toplevel="memory_sim_d64", tests="sim_", count=7, build_dir=tmp_path,
                  settings=settings, monkeypatch=monkeypatch)


def test_axi4_master_cosim(tmp_path, monkeypatch):
    config = MemoryConfig(data_width=64, addr_width=16, len_width=12)
    dut = AXI4Master(config, axi_id_width=4, max_burst=256, max_outstanding=8)
    run_memory_tb(dut, toplevel="memory_axi_d64", tests="axi_", count=6, build_dir=tmp_path,
                  settings={"config": dataclasses.asdict(config)}, monkeypatch=monkeypatch)
