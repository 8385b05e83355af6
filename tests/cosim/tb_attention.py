"""cocotb testbench (tier 2): the attention block with its KV cache in SimMemory.

Run by ``tests/cosim/test_attention_cosim.py`` with the configuration in
``ATTENTION_TB_SETTINGS``: for each prompt length, the prompt is prefilled in chunks of
``max_queries`` tokens from position 0 and then decoded for a few steps; every output
value is checked against the golden model's attention. A last decode step runs at the
cache's final position over a cache image stored through the harness's load port.
"""

import json
import os
import random

import cocotb
import numpy as np

from tritium.hw.attention.kvcache import KVLayout
from tritium.sim.testing.attention_driver import AttentionDriver
from tritium.sim.testing.attention_tb import cache_image, fill_cache
from tritium.sim.testing.cocotb_tb import TRAFFIC, reset, start_clock
from tritium.sim.golden.model import GoldenCache


@cocotb.test()
async def attention_prefill_then_decode(dut):
    settings = json.loads(os.environ["ATTENTION_TB_SETTINGS"])
    idle, stall = TRAFFIC[os.environ.get("ATTENTION_TB_TRAFFIC", "smooth")]
    start_clock(dut)
    driver = AttentionDriver.from_settings(dut, settings, idle=idle, stall=stall,
                                           rng=random.Random(1))
    model, cfg, memory, max_queries = driver.model, driver.cfg, driver.memory, driver.max_queries
    driver.set_score_scale()
    rng = np.random.default_rng(1)
    await reset(dut)
    for prompt, decode in settings["sequences"]:
        cache = GoldenCache(model)
        for start in range(0, prompt, max_queries):
            await driver.run_job(cache, rng, 0, start, min(max_queries, prompt - start))
        for step in range(decode):
            await driver.run_job(cache, rng, 0, prompt + step, 1)
    # The last position of the cache, over a prefilled image.
    last = cfg.capacity - 1
    cache = GoldenCache(model)
    fill_cache(cache, rng, 0, last)
    await driver.store(cache_image(cache, KVLayout(cfg, memory), 0, last))
    await driver.run_job(cache, rng, 0, last, 1)
