"""Tier 3: the top on a board memory model (Verilator), loaded through the backdoor.

``bench/layer.py`` at the ``tiny`` shape, on two ports of the KV260 memory model (the
design's port striped across HP0 and HP1, as the ``kv260`` preset's): the representative
in the default run of the full-size layer simulation (the same harness, backdoor, bridge
and bench code; ``python bench/layer.py --json`` runs BitNet-0.7B's layer on ``kv260``).
Every output equals the golden layer's; the counters add up to the words each kind of
instruction must move, and both ports carry their share.
"""

import json

import pytest

from tritium.host.compiler import compile_model, instruction_words
from tritium.host.model import Model
from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.sim.testing.bench_scripts import load_bench

pytestmark = pytest.mark.cosim


def test_layer_bench_on_the_kv260_memory_model_matches_golden(capsys):
    bench = load_bench("layer")
    status = bench.main(["--config", "tiny", "--memory", "kv260", "--ports", "2",
                         "--contexts", "12,40", "--prefill", "8", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["matches_golden"] and report["ports"] == 2
    assert [case["name"] for case in report["cases"]] == ["prefill-8", "decode-12", "decode-40"]
    assert all(case["matches_golden"] for case in report["cases"])

    config, model_config = bench.layer_slice(ACCELERATOR_PRESETS["tiny"],
                                             ACCELERATOR_PRESETS["tiny"].model)
    compiled = compile_model(Model.random(model_config, seed=0), config)
    weights = sum(words for name, (_, words) in compiled.placement.items()
                  if name.startswith("layer0.w"))
    io_words = model_config.hidden // config.lanes
    fetches = len(compiled.instructions) * instruction_words(config.data_width // 8)
    kv = config.attention
    record_words = -(-(16 * kv.head_dim + 52) // config.data_width)
    for case in report["cases"]:
        counters, tokens = case["counters"], case["tokens"]
        context = case["position"] + tokens
        assert counters["linear_words"] == weights                # each matrix read once
        assert counters["fetch_words"] == fetches
        assert counters["move_words"] == 2 * tokens * io_words    # LOAD and STORE
        # Every kv head writes the run's records and reads its keys once per pass: decode
        # has one pass per kv head over the whole context.
        if case["phase"] == "decode":
            assert counters["attend_words"] == kv.kv_heads * (context + 1) * record_words
        # The ports saw the run's words plus the link's io write and read-back: reads on
        # both (the weights alone are many chunks), writes all through HP0.
        ports = case["port_words"]
        assert sorted(ports) == ["HP0", "HP1"]
        assert ports["HP1"]["written_words"] == 0
        assert min(ports["HP0"]["read_words"], ports["HP1"]["read_words"]) > weights // 3
        assert case["link_words"] == 2 * tokens * io_words
        assert sum(p["read_words"] + p["written_words"] for p in ports.values()) == \
            sum(counters[name] for name in counters if name.endswith("_words")) + case["link_words"]


def test_layer_bench_refuses_a_model_the_design_cannot_hold(capsys):
    status = load_bench("layer").main(["--model", "bitnet-b1.58-2b-4t", "--config", "kv260"])
    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith("bench/layer.py: error: bitnet-b1.58-2b-4t on kv260: model")
    assert error.count("\n") == 1
