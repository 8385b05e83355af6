"""cocotb side of bench/attention.py: time attention jobs on the attention block.

Settings come in ``ATTENTION_BENCH_SETTINGS``; per case, the phase times of each job go
to the JSON file it names. Every output is checked against the golden attention, so a
benchmark never reports the speed of a wrong answer.
"""

import json
import os

import cocotb
import numpy as np

from tritium.hw.attention.kvcache import KVLayout
from tritium.sim.testing.attention_driver import AttentionDriver
from tritium.sim.testing.attention_tb import cache_image, fill_cache
from tritium.sim.testing.cocotb_tb import reset, start_clock
from tritium.sim.golden.model import GoldenCache


@cocotb.test()
async def measure(dut):
    settings = json.loads(os.environ["ATTENTION_BENCH_SETTINGS"])
    start_clock(dut)
    driver = AttentionDriver.from_settings(dut, settings)
    model, cfg, memory, max_queries = driver.model, driver.cfg, driver.memory, driver.max_queries
    driver.set_score_scale()
    rng = np.random.default_rng(0)
    await reset(dut)
    report = []
    for case in settings["cases"]:
        cache = GoldenCache(model)
        if case["kind"] == "decode":
            # A prefilled cache of context - 1 records, stored directly (not timed).
            fill_cache(cache, rng, 0, case["start"])
            await driver.store(cache_image(cache, KVLayout(cfg, memory), 0, case["start"]))
        busy = int(dut.busy_cycles.value)
        jobs = []
        for start in range(case["start"], case["start"] + case["tokens"], max_queries):
            tokens = min(max_queries, case["start"] + case["tokens"] - start)
            jobs.append(await driver.run_job(cache, rng, 0, start, tokens))
        report.append(dict(case, jobs=jobs, busy_cycles=int(dut.busy_cycles.value) - busy))
    with open(settings["output"], "w") as out:
        json.dump(report, out)
