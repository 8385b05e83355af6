"""Tier 3: the top on a board memory model (Verilator), loaded through the backdoor.

``bench/layer.py`` at the ``tiny`` shape, on the four ports of the KV260 memory model
with a weight port two bus words wide (the units' port and the TLMM's striped across
HP0..HP3, as the ``kv260`` preset's): the representative in the default run of the
full-size layer simulation (the same harness, backdoor, bridge and bench code;
``python bench/layer.py --json`` runs BitNet-0.7B's layer on ``kv260``). Every output
equals the golden layer's; the counters add up to the words each kind of instruction
must move, and every port carries its share.
"""

import dataclasses
import json

import numpy as np
import pytest

from tritium.host.accelerator import Accelerator
from tritium.host.compiler import compile_model, instruction_words
from tritium.host.importers import load_model
from tritium.host.model import Model
from tritium.host.sim_transport import BoardSimTransport
from tritium.hw.attention.block import pass_key_counts
from tritium.hw.attention.kvcache import kv_layout
from tritium.hw.config import ACCELERATOR_PRESETS, AcceleratorConfig
from tritium.hw.head_layout import head_layout_of
from tritium.hw.memory_model import MEMORY_MODELS
from tritium.sim.golden.model import GoldenModel, QuantizedModel, final_top
from tritium.sim.testing.bench_scripts import load_bench

pytestmark = pytest.mark.cosim


def test_layer_bench_on_the_kv260_memory_model_matches_golden(capsys):
    bench = load_bench("layer")
    status = bench.main(["--config", "tiny", "--memory", "kv260", "--ports", "4",
                         "--weight-port-words", "2", "--attention-lanes", "1",
                         "--attention-dims", "16", "--kv-reads", "weights",
                         "--contexts", "12,40", "--prefill", "8", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["matches_golden"] and report["ports"] == 4
    assert report["config"]["weight_port_words"] == 2
    assert (report["config"]["attention_lanes"], report["config"]["attention_dims"]) == (1, 16)
    assert report["config"]["kv_reads"] == "weights"
    assert [case["name"] for case in report["cases"]] == ["prefill-8", "decode-12", "decode-40"]
    assert all(case["matches_golden"] for case in report["cases"])

    config = AcceleratorConfig.from_json(json.dumps(report["config"]))     # the layer's slice
    model_config = config.model
    compiled = compile_model(Model.random(model_config, seed=0), config)
    weights = sum(words for name, (_, words) in compiled.placement.items()
                  if name.startswith("layer0.w"))
    io_words = model_config.hidden // config.lanes
    fetches = len(compiled.instructions) * instruction_words(config.data_width // 8)
    kv, layout = config.attention, kv_layout(config)
    # A record in whole bus words (3 of 256 bits), its pass read in whole 512-bit words of
    # the weight port, which the records straddle.
    record_words = -(-(16 * kv.head_dim + 52) // config.data_width)
    assert layout.words_per_record == record_words == 3
    for case in report["cases"]:
        counters, tokens = case["counters"], case["tokens"]
        context = case["position"] + tokens
        assert counters["linear_words"] == weights                # each matrix read once
        assert counters["fetch_words"] == fetches
        assert counters["move_words"] == 2 * tokens * io_words    # LOAD and STORE
        # Every kv head writes the run's records and reads its keys once per pass (through
        # the weight port, counted in bus words): in decode, one lane makes a pass over
        # the whole context per query head.
        if case["phase"] == "decode":
            assert pass_key_counts(kv, case["position"], 1) == [context] * kv.heads
            assert counters["attend_words"] == (kv.heads * 2 * -(-context * record_words // 2)
                                                + kv.kv_heads * record_words)
        # The ports saw the run's words plus the link's io write and read-back: reads on
        # all (the weights alone are many chunks), writes all through HP0.
        ports = case["port_words"]
        assert sorted(ports) == ["HP0", "HP1", "HP2", "HP3"]
        assert all(ports[name]["written_words"] == 0 for name in ("HP1", "HP2", "HP3"))
        assert min(port["read_words"] for port in ports.values()) > weights // 5
        assert case["link_words"] == 2 * tokens * io_words
        assert sum(p["read_words"] + p["written_words"] for p in ports.values()) == \
            sum(counters[name] for name in counters if name.endswith("_words")) + case["link_words"]


def test_layer_bench_refuses_a_model_the_design_cannot_hold(capsys):
    status = load_bench("layer").main(["--model", "bitnet-b1.58-2b-4t", "--config", "kv260"])
    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith("bench/layer.py: error: bitnet-b1.58-2b-4t on kv260: model")
    assert error.count("\n") == 1


@pytest.mark.parametrize("head_format", ["int8", "int4"])
def test_the_weight_port_carries_the_linears_and_the_head_bit_exact(head_format):
    """The whole tiny model on the kv260 preset's memory arrangement (four HP ports of the
    KV260 memory model, a 512-bit weight port beside the units' port, RoPE's table in
    memory, one attention lane of 16 dimensions behind 8-lane vectors), with either head
    format (int4: 128 codes a word in two groups, as the kv260 preset's int4 head; int8
    with the weights read ahead by PREFETCH into a weight queue of 128 words and the
    instructions read 8 at a time, int4 without either): a
    12-token prompt and greedy decode steps return the golden model's top-k, and the
    TLMM and the head read all their words through the weight port (counted in bus
    words), and the attention reads the KV records through it too."""
    config = dataclasses.replace(ACCELERATOR_PRESETS["tiny"], name=f"tiny-{head_format}",
                                 memory_ports=4, weight_port_words=2, attention_lanes=1,
                                 attention_dims=16, rope_table="memory",
                                 kv_reads="weights", head_format=head_format,
                                 memory_words=2 ** 15,
                                 weight_queue=128 if head_format == "int8" else 0,
                                 fetch_block=8 if head_format == "int8" else 1)
    model = load_model("tiny")
    golden = GoldenModel(model, QuantizedModel(model, config.head_weights))
    cache = golden.new_cache()
    ids = np.random.default_rng(5).integers(0, 256, 12).tolist()
    transport = BoardSimTransport(config, MEMORY_MODELS["kv260"])
    with Accelerator(config, transport, timeout=600) as accelerator:
        compiled = accelerator.load(model)
        for step in range(3):
            indices, scores = accelerator.prefill_top(ids)
            want = final_top(golden.qmodel, golden.forward_hidden(ids, cache), config.head_k)
            assert np.array_equal(indices, want[0]) and np.array_equal(scores, want[1]), step
            ids = [int(indices[0])]
        counters = accelerator.counters()
    head = head_layout_of(config)
    assert head.data_width == 512 and head.code_bits == {"int8": 8, "int4": 4}[head_format]
    assert counters["head_words"] == 2 * head.words
    matrices = sum(words for name, (_, words) in compiled.placement.items()
                   if name.split(".")[-1].startswith("w"))
    assert counters["linear_words"] == matrices
    # The last run, a decode step at position 13, per layer: its passes' records read
    # through the weight port (the 564-bit records of 3 bus words straddle its 512-bit
    # words: a pass of 14 reads 21 of them), its own written, RoPE's rows for its position
    # read through the units' port.
    kv, layout = config.attention, kv_layout(config)
    per_layer = (sum(2 * layout.port_words(count) for count in pass_key_counts(kv, 13, 1))
                 + kv.kv_heads * layout.words_per_record + config.rope_rows)
    assert per_layer == 4 * 2 * 21 + 2 * 3 + config.rope_rows
    assert counters["attend_words"] == config.model.layers * per_layer
