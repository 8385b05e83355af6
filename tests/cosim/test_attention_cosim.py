# amaranth: UnusedElaboratable=no
"""Tier 2: the attention block (RoPE, quantization, KV cache in SimMemory, attention) as
generated Verilog under cocotb (Verilator), bit-exact against the golden model.

``tiny``'s attention (4 heads over 2 kv heads: grouped-query) and one head of
``bitnet-b1.58-large`` (head_dim 96) each prefill prompts of 1, 7, 64 and 128 tokens
in chunks and then decode from the prefilled cache; a last decode step runs at the cache's
final position over a cache image stored through the load port.
"""

import dataclasses
import json
from pathlib import Path

import pytest
from cocotb_tools.runner import get_results

from tritium.hw.config import MODEL_PRESETS, AttentionConfig
from tritium.hw.memory.port import MemoryConfig
from tritium.sim.backend.cosim import run_cocotb
from tritium.sim.testing.harness import AttentionHarness

pytestmark = pytest.mark.cosim

TB_DIR = Path(__file__).parent
MEMORY = MemoryConfig(data_width=128, addr_width=20, len_width=12)
LARGE_HEAD = dataclasses.replace(MODEL_PRESETS["bitnet-b1.58-large"], heads=1, kv_heads=1,
                                 layers=1, max_context=256)
TINY = dataclasses.replace(MODEL_PRESETS["tiny"], layers=1)

CASES = {
    "tiny-gqa": (TINY, AttentionConfig.for_model(TINY, lanes=4, dims_per_cycle=8), "both"),
    "large-head": (LARGE_HEAD, AttentionConfig.for_model(LARGE_HEAD, lanes=4, dims_per_cycle=8),
                   "smooth"),
}
SEQUENCES = [(1, 2), (7, 3), (64, 2), (128, 3)]


@pytest.mark.parametrize("name", CASES)
def test_attention_block_cosim(name, tmp_path, monkeypatch):
    model, config, traffic = CASES[name]
    harness = AttentionHarness(model, config, MEMORY, max_queries=16, bytes_per_cycle=16,
                               latency=20)
    settings = {"model": dataclasses.asdict(model), "attention": dataclasses.asdict(config),
                "memory": dataclasses.asdict(MEMORY), "max_queries": 16, "sequences": SEQUENCES}
    monkeypatch.syspath_prepend(str(TB_DIR))
    results = run_cocotb(harness, toplevel=f"attention_{name.replace('-', '_')}",
                         test_module="tb_attention", build_dir=tmp_path,
                         extra_env={"ATTENTION_TB_SETTINGS": json.dumps(settings),
                                    "ATTENTION_TB_TRAFFIC": traffic})
    assert get_results(results) == (1, 0)
