"""Tier 3: the real driver over the ``sim`` transport runs the tiny model end to end on
the generated Verilog (Verilator), logits equal to the golden model bit for bit."""

import json

import numpy as np
import pytest

from tritium.host.accelerator import Accelerator
from tritium.cli import main
from tritium.host.importers import load_model
from tritium.host.runtime import Session, generate
from tritium.host.sim_transport import SimTransport
from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.hw.head_layout import HeadLayout
from tritium.sim.golden.model import GoldenModel, final_top
from tritium.sim.testing.bench_scripts import load_bench

# About 15 s of simulation once the simulator is built (shared with test_top_sim.py).
pytestmark = pytest.mark.cosim

TINY = ACCELERATOR_PRESETS["tiny"]


def test_prefill_decode_and_a_second_prompt_match_golden():
    model = load_model("tiny")
    golden = GoldenModel(model)
    rng = np.random.default_rng(3)
    with Accelerator(TINY, SimTransport(TINY), timeout=600) as accelerator:
        accelerator.load(model)
        for length in (1, 7, 20):                     # 20 tokens: runs of 8, 8 and 4
            accelerator.reset()
            cache = golden.new_cache()
            ids = rng.integers(0, 256, length).tolist()
            assert np.array_equal(accelerator.prefill(ids), golden.forward(ids, cache)), length
        # Decode 32 tokens from the 20-token prompt, then a second prompt in the same
        # conversation.
        token = int(np.argmax(golden.forward([5], cache)[-1]))
        accelerator.decode(5)
        for step in range(32):
            got, want = accelerator.decode(token), golden.forward([token], cache)[-1]
            assert np.array_equal(got, want), f"decode step {step}"
            token = int(np.argmax(want))
        more = rng.integers(0, 256, 11).tolist()
        assert np.array_equal(accelerator.prefill(more), golden.forward(more, cache))
        counters = accelerator.counters()
        assert counters["runs"] > 0 and counters["cycles"] > 0


def test_the_device_head_returns_the_golden_top_k():
    """A 20-token prompt (runs of 8, 8 and 4: HEAD scores the last run's last token),
    then greedy decode steps on the device's argmax: rows and integer scores equal to
    the golden model's top-k; the head unit reads the whole head once per run."""
    model = load_model("tiny")
    golden = GoldenModel(model)
    cache = golden.new_cache()
    ids = np.random.default_rng(4).integers(0, 256, 20).tolist()
    with Accelerator(TINY, SimTransport(TINY), timeout=600) as accelerator:
        accelerator.load(model)
        for step in range(6):
            indices, scores = accelerator.prefill_top(ids)
            want = final_top(golden.qmodel, golden.forward_hidden(ids, cache), TINY.head_k)
            assert np.array_equal(indices, want[0]) and np.array_equal(scores, want[1]), step
            ids = [int(indices[0])]
        counters = accelerator.counters()
        hidden, vocab = TINY.model.hidden, TINY.model.vocab_size
        assert counters["head_words"] == HeadLayout(vocab, hidden, TINY.data_width).words
        assert counters["head_cycles"] >= counters["head_words"]


def test_greedy_steps_in_one_run_match_golden():
    """One run of 12 steps on the generated Verilog: each step's LOAD reads the choice
    the step before stored, and the 12 choices are the golden runtime's greedy tokens;
    the head unit read the whole head once a step."""
    model = load_model("tiny")
    golden = GoldenModel(model)
    ids = np.random.default_rng(5).integers(0, 256, 9).tolist()
    expected = list(generate(Session(golden), ids, 13))
    with Accelerator(TINY, SimTransport(TINY), timeout=600) as accelerator:
        accelerator.load(model)
        indices, _ = accelerator.prefill_top(ids, 1)
        assert int(indices[0]) == expected[0]
        assert accelerator.decode_greedy(expected[0], 12).tolist() == expected[1:]
        assert accelerator.position == len(ids) + 12
        counters = accelerator.counters()
        head = HeadLayout(TINY.model.vocab_size, TINY.model.hidden, TINY.data_width).words
        assert counters["status"] == 0 and counters["head_words"] == 12 * head


def test_the_e2e_bench_times_the_device_head(capsys):
    """bench/e2e.py on the tiny design: every run and the closing decode step with the
    device head match golden; that step's HEAD read the whole head once, a word a cycle
    at most."""
    status = load_bench("e2e").main(["--prompt", "9", "--decode", "2", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["matches_golden"] and report["head_format"] == "int8"
    head = report["device_head"]
    assert head["matches_golden"] and head["position"] == 9 + 2
    assert head["head_words"] == HeadLayout(TINY.model.vocab_size, TINY.model.hidden,
                                            TINY.data_width).words
    assert head["head_words"] <= head["head_cycles"] < head["cycles"]


def test_demo_runs_on_the_simulated_hardware(capsys):
    assert main(["demo", "-n", "12"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Once upon a time") and len(out) > len("Once upon a time\n")
    # The tiny design has the LM head on the device: its top-k is what is checked.
    assert "'sim' backend" in err and "every top-k matches the golden model" in err


def _run_json(capsys, backend):
    assert main(["run", "--model", "tiny", "--backend", backend, "--prompt", "The cat",
                 "-n", "5", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_run_json_reports_cycles_and_the_golden_check(capsys):
    result = _run_json(capsys, "sim")
    assert result["backend"] == "sim" and result["matches_golden"] is True
    assert result["clock_hz"] == TINY.clock_hz and result["prefill_cycles"] > 0
    # One run per decode step; the first token comes from the prefill.
    assert len(result["decode_cycles_each"]) == 4 and result["decode_cycles"] > 0
    golden = _run_json(capsys, "golden")
    assert (result["tokens"], result["text"]) == (golden["tokens"], golden["text"])
