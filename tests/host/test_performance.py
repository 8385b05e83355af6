"""The analytic performance model (host/performance.py): its program is the compiler's, its
words are the controller's, and its cycles agree with the cycle-accurate simulation.

The simulated comparisons are the one exception to "no test asserts a timing": they
compare the model's cycles with the simulator's cycles, not with a clock."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from tritium.boards import BOARDS, preset_memory
from tritium.host.compiler import compile_model, memory_plan, program_fields
from tritium.host.importers import load_model, read_model_config
from tritium.host.model import Model
from tritium.host.performance import (CALIBRATION, HOSTS, KINDS, Recorded, SimulatedCase,
                                      _with_separate_norms,
                                      attention_key_cycles, board_setup, compare_run,
                                      derive_config, estimate_run, fit_problems,
                                      host_run_seconds, link_traffic, port_timing, project,
                                      recorded_cases, report_cases, simulated_cases)
from tritium.hw.memory.mux import UNIT_PORT_LATENCY
from tritium.hw.memory.onchip import read_latency
from tritium.hw.memory.arbiter import PortArbiter
from tritium.hw.memory.stripe import PortStriper
from tritium.hw.attention.block import pass_blocks
from tritium.hw.attention.core import FINISH_WAIT
from tritium.hw.config import ACCELERATOR_PRESETS, MODEL_PRESETS
from tritium.hw.control.controller import CONTROLLER_COUNTERS
from tritium.hw.control.isa import FLAG_NEXT, OPCODES
from tritium.hw.elementwise import NormQuant
from tritium.hw.head_layout import HeadLayout
from tritium.hw.memory_model import MEMORY_MODELS

TINY = ACCELERATOR_PRESETS["tiny"]
KV260 = ACCELERATOR_PRESETS["kv260"]
LARGE = MODEL_PRESETS["bitnet-b1.58-large"]
TWO_B = MODEL_PRESETS["bitnet-b1.58-2b-4t"]
LAYER_JSON = Path(__file__).resolve().parents[2] / "docs" / "bench-layer-kv260.json"
RECORDED = recorded_cases()
TOLERANCE = 0.05                    # the model within 5% of every simulated run
FIELDS = ("opcode", "flags", "layer", "address", "src", "dst", "src_stride", "dst_stride",
          "beats", "blocks")


def shape_program(config):
    return [{"opcode": OPCODES[i["op"]], **{f: i.get(f, 0) for f in FIELDS[1:]}}
            for i in program_fields(config)]


@pytest.mark.parametrize("config", [TINY, ACCELERATOR_PRESETS["ulx3s"]], ids=lambda c: c.name)
def test_the_shape_only_program_is_the_compiled_program(config):
    compiled = compile_model(load_model("tiny"), config)
    assert shape_program(config) == [{f: i[f] for f in FIELDS} for i in compiled.instructions]
    plan = memory_plan(config)
    assert plan.placement == compiled.placement and plan.words == compiled.words
    assert (plan.io_address, plan.program_address) == (compiled.io_address,
                                                       compiled.program_address)


def test_the_shape_only_program_of_a_gqa_model():
    shape = dataclasses.replace(MODEL_PRESETS["tiny"], name="gqa", layers=2, heads=8,
                                kv_heads=2, head_dim=16, ffn=256, max_context=64)
    config = derive_config(TINY, shape)
    compiled = compile_model(Model.random(shape, seed=3), config)
    assert shape_program(config) == [{f: i[f] for f in FIELDS} for i in compiled.instructions]


def test_each_linear_reads_its_packed_matrix_and_each_norm_its_gains():
    plan = memory_plan(TINY)
    estimate = estimate_run(TINY, "onchip", 0, 1)
    # The layers' regions, then (a device head) the output norm's gains.
    regions = sorted((address, words) for name, (address, words) in plan.placement.items()
                     if name.startswith("layer") or name == "output_norm")
    # One NORM reads its gains once per token (a NORM of the next LINEAR's output once):
    # with one token, its whole region.
    reads = sorted((fields["address"], item.read_words)
                   for fields, item in zip(program_fields(TINY), estimate.instructions)
                   if item.op in ("LINEAR", "NORM"))
    assert reads == regions


def test_the_counters_are_the_controllers():
    counters = estimate_run(TINY, "onchip", 5, 3).counters()
    assert set(counters) == set(CONTROLLER_COUNTERS) - {"runs"}
    assert counters["cycles"] == pytest.approx(sum(counters.get(f"{k}_cycles", 0) for k in KINDS), abs=3)


@pytest.mark.parametrize("config, memory", [(TINY, "onchip"), (KV260, "kv260")],
                         ids=["tiny", "kv260"])
def test_decode_slows_with_the_context_and_prefill_with_the_tokens(config, memory):
    capacity = config.attention.capacity
    decode = [estimate_run(config, memory, p, 1).cycles
              for p in (0, 1, 15, 63, capacity // 2, capacity - 1)]
    assert decode == sorted(decode) and decode[0] < decode[-1]
    prefill = [estimate_run(config, memory, 0, t).cycles for t in range(1, config.max_tokens + 1)]
    assert prefill == sorted(prefill)
    # Per token, a full tile is cheaper than a single token: weights are read once per tile.
    assert prefill[-1] / config.max_tokens < prefill[0]


@pytest.mark.parametrize("config, memory", [(TINY, "onchip"), (TINY, "kv260"),
                                            (KV260, "kv260")], ids=["tiny", "tiny-kv260", "kv260"])
def test_no_run_beats_the_port_it_moves_its_bytes_through(config, memory):
    """What can be asserted of a roofline: every word a run moves goes through the
    design's ports, so the run takes at least their time for them (the faster port's,
    the weight port's, for all of them). (The rooflines of all of a board's ports may
    well be faster than the design, and are not asserted.)"""
    timing = port_timing(memory, config)
    fastest = max(timing.bytes_per_cycle, timing.weight_bytes_per_cycle)
    for position, tokens in ((0, config.max_tokens), (40, 1), (config.attention.capacity - 1, 1)):
        run = estimate_run(config, memory, position, tokens)
        assert run.cycles >= run.bytes_moved / fastest


@pytest.mark.parametrize("position, tokens", [(0, 8), (0, 1), (56, 8), (1000, 1)])
def test_attend_passes_back_to_back(position, tokens):
    """With the passes overlapped an ATTEND costs less than with the passes one at a
    time, and still every key at its rate and every block's capture and finish (they
    follow each other on the one finish)."""
    timing = port_timing("kv260", KV260)

    def attend(recorded):
        run = estimate_run(KV260, "kv260", position, tokens, recorded=recorded)
        return next(item for item in run.instructions if item.op == "ATTEND")

    overlapped, serial = attend(Recorded()), attend(Recorded(serial_passes=True))
    assert overlapped.cycles < serial.cycles
    a = KV260.attention
    blocks = pass_blocks(a, position, tokens)
    finishes = sum(a.beats_per_key + queries * (a.head_dim // a.io_lanes + FINISH_WAIT)
                   for _, queries in blocks)
    assert overlapped.terms["keys"] + overlapped.terms["passes"] >= finishes
    keys = sum(count for count, _ in blocks) * attention_key_cycles(KV260, timing)
    assert overlapped.terms["keys"] == serial.terms["keys"] == pytest.approx(float(keys))


def test_a_report_says_whether_its_passes_overlapped():
    """Reports recorded before the core overlapped its passes do not say so; they are
    modelled as that core ran them."""
    report = {"config": "tiny", "runs": [{"kind": "prefill", "position": 0, "tokens": 8,
                                          "counters": {}}]}
    serial, overlapped = (report_cases(r)[0] for r in
                          (report, {**report, "attention_passes": "overlapped"}))
    assert serial.recorded.serial_passes and not overlapped.recorded.serial_passes


@pytest.mark.parametrize("config, memory", [(TINY, "onchip"), (KV260, "kv260")], ids=repr)
@pytest.mark.parametrize("position, tokens", [(0, 8), (63, 1)])
def test_the_gating_costs_the_linear_its_latency_not_an_instruction(config, memory, position,
                                                                   tokens):
    """The LINEAR of ``w_up`` that gates takes the gate vector's beats beside its results,
    a beat a cycle as its results leave, so it costs the gating unit's latency more;
    the program before, with a GATE after that LINEAR, is the recorded reports'. (With
    a weight queue the LINEARs' words read ahead depend on the instructions before, so
    there only the run's total is compared.)"""
    fused = estimate_run(config, memory, position, tokens)
    separate = estimate_run(config, memory, position, tokens,
                            recorded=Recorded(separate_gate=True))
    assert "GATE" not in [item.op for item in fused.instructions]
    gates = [item for item in separate.instructions if item.op == "GATE"]
    assert len(gates) == config.model.layers
    gating = [item for item in fused.instructions if "gating" in item.terms]
    assert len(gating) == config.model.layers
    assert fused.cycles < separate.cycles
    if not config.weight_queue:
        linears = [(a, b) for a, b in zip(fused.instructions,
                                          (i for i in separate.instructions if i.op != "GATE"))
                   if "gating" in a.terms]
        for gated, plain in linears:
            assert gated.cycles == plain.cycles + gated.terms["gating"]
        assert separate.cycles - fused.cycles == pytest.approx(
            sum(g.cycles + g.fetch - l.terms["gating"] for g, l in zip(gates, gating)))


@pytest.mark.parametrize("config, memory", [(TINY, "onchip"), (KV260, "kv260")], ids=repr)
def test_a_fused_norm_costs_its_gains_and_its_linear_the_last_codes(config, memory):
    """A NORM of the next LINEAR's output reads its gains once; that LINEAR then waits
    for the last vector's codes (the codes latency and its pass 2), not for pass 1 over
    every vector. The program before, each such NORM plain just after its LINEAR, is the
    recorded reports'."""
    program = program_fields(config)
    fused = estimate_run(config, memory, 0, 8)
    separate = estimate_run(config, memory, 0, 8, recorded=Recorded(separate_norms=True))
    assert fused.cycles < separate.cycles
    per_chunk = config.tlmm.k_per_word // config.lanes
    following = None
    for fields, item in zip(program, fused.instructions):
        if fields["op"] == "NORM" and fields.get("flags", 0) & FLAG_NEXT:
            assert item.read_words == -(-fields["beats"] // 2)
            following = fields
        elif fields["op"] == "LINEAR":
            tail = 0
            if following:       # 8 vectors, each pass 2 of B' behind a vector of B
                padded = -(-following["beats"] // per_chunk) * per_chunk
                tail = (NormQuant.codes_latency + CALIBRATION["norm_fused"] + padded
                        + 7 * (padded - following["beats"]))
            assert item.terms.get("norm", 0) == tail
            following = None
    unfused = _with_separate_norms(program)
    assert [f["op"] for f in unfused].count("NORM") == [f["op"] for f in program].count("NORM")
    assert not any(f.get("flags", 0) & FLAG_NEXT for f in unfused)
    for norm in (f for f in program if f["op"] == "NORM" and f.get("flags", 0) & FLAG_NEXT):
        n = next(n for n, f in enumerate(unfused)
                 if f["op"] == "NORM" and f["address"] == norm["address"])
        assert unfused[n - 1]["op"] == "LINEAR" and unfused[n - 1]["dst"] == norm["src"]


@pytest.mark.parametrize("position, tokens", [(0, 8), (63, 1)])
def test_the_next_matrix_loads_while_the_last_ones_last_chunk_runs(position, tokens):
    """With a weight queue the chunk buffer loads the next matrix as soon as it is done
    with the last: a LINEAR whose first chunk's words were queued in time starts that
    chunk at a word a cycle, not at the gearbox's rate. In a prefill of 8 tokens every
    LINEAR's first chunk is there (its words queued, the last chunk before replayed 8
    times); reports recorded before load a matrix once its LINEAR comes."""
    ahead = estimate_run(KV260, "kv260", position, tokens)
    late = estimate_run(KV260, "kv260", position, tokens, recorded=Recorded(late_loads=True))
    gearbox = KV260.tlmm.tile.word_bits // (KV260.data_width * KV260.weight_port_words)
    if tokens == 8:
        assert ahead.cycles < late.cycles
        for fields, a, b in zip(program_fields(KV260), ahead.instructions, late.instructions):
            if fields["op"] == "LINEAR":    # its first pass a sweep, not the gearbox's load
                saved = b.terms["stream"] - a.terms["stream"]
                assert saved == fields["blocks"] * (gearbox - 1)
    else:                               # decode is the memory's either way
        assert ahead.cycles == pytest.approx(late.cycles, rel=1e-4)
    assert Recorded(late_loads=True).is_current(TINY)          # no weight queue to load from
    assert not Recorded(late_loads=True).is_current(KV260)


def test_a_report_says_whether_its_gating_was_fused():
    """Reports recorded before the LINEAR of ``w_up`` gated do not say so; they are
    modelled with the GATE their program had."""
    report = {"config": "tiny", "runs": [{"kind": "prefill", "position": 0, "tokens": 8,
                                          "counters": {}}]}
    separate, fused = (report_cases(r)[0] for r in (report, {**report, "ffn_gating": "fused"}))
    assert separate.recorded.separate_gate and not fused.recorded.separate_gate
    assert not separate.recorded.is_current(TINY)


def test_a_projection_checks_itself_against_its_design_as_built():
    """The simulated checks a projection prints are the runs of the design as it is
    built now, not the recorded reports of hardware it has since changed (kept in docs/
    for the model's agreement)."""
    setup = board_setup(LARGE, BOARDS["kv260"])
    checks = project(setup, LARGE, [64], [64], simulated=RECORDED)["simulated"]
    sources = {check["source"] for check in checks}
    assert sources == {"docs/bench-e2e-kv260.json", "docs/bench-layer-kv260.json"}, sources


def test_runs_outside_the_design_are_refused():
    with pytest.raises(ValueError, match="1 .. 8 tokens"):
        estimate_run(TINY, "onchip", 0, 9)
    with pytest.raises(ValueError, match="exceed the KV cache's 256 tokens"):
        estimate_run(TINY, "onchip", 250, 8)


def test_the_latency_follows_the_memory_implementation():
    # OnChipMemory: its first word after 1 + read_latency(depth) cycles; tiny's 16,384
    # words are banked (hw/memory/onchip.py), two cycles more than a single memory. A
    # unit sees 4 cycles more: the port registers on its port and on the top's, a cycle
    # each way (hw/memory/mux.py).
    assert UNIT_PORT_LATENCY == 4
    assert port_timing("onchip", TINY).latency == 1 + read_latency(TINY.memory_words) + 4 == 8
    one_port = port_timing("kv260", dataclasses.replace(KV260, memory_ports=1, weight_port_words=1,
                                                        kv_reads="units", weight_queue=0))
    assert one_port.latency == 40 + 3 + 4 and one_port.word_cycles == pytest.approx(32 / 15.84)
    assert port_timing(MEMORY_MODELS["onchip"], TINY, implementation="board").latency == 3 + 4
    # Striped across two HP ports: both ports' rate (7.92 GB/s, so a 256-bit word every
    # 1.01 cycles) and the striper's 3 cycles of latency.
    two = dataclasses.replace(KV260, memory_ports=2, weight_port_words=1,
                              kv_reads="units", weight_queue=0)
    striped = port_timing("kv260", two)
    assert striped.latency == striped.weight_latency == 40 + 3 + PortStriper.LATENCY + 4
    assert striped.word_cycles == pytest.approx(32 / (2 * 15.84))
    assert striped.weight_words == 1 and striped.weight_word_cycles == striped.word_cycles
    with pytest.raises(ValueError, match="uses ports 0 .. 1, not port 1 alone"):
        port_timing("kv260", two, port=1)
    # The kv260 preset: four HP ports (13.33 GB/s) for the 512-bit weight port, the
    # first two of them for the units' 256-bit port (7.92 GB/s, 1.01 cycles a word);
    # both through a striper and an arbiter; the weight port has the top's port
    # registers only, and a weight word waits for its second bus word from one port
    # (2.02 cycles a word); with the weight queue its clients share it through a second
    # arbiter in the datapath.
    assert (KV260.memory_ports, KV260.weight_port_words, KV260.units_ports) == (4, 2, 2)
    four = port_timing("kv260", KV260)
    assert four.latency == 40 + 3 + PortStriper.LATENCY + PortArbiter.LATENCY + 4
    assert four.weight_latency == 40 + 3 + PortStriper.LATENCY + 2 * PortArbiter.LATENCY + 2 + 2
    unqueued = port_timing("kv260", dataclasses.replace(KV260, weight_queue=0))
    assert unqueued.weight_latency == four.weight_latency - PortArbiter.LATENCY
    assert four.word_cycles == pytest.approx(32 / (2 * 15.84))
    assert four.weight_word_cycles == pytest.approx(64 / MEMORY_MODELS["kv260"]
                                                    .sustained_bytes_per_cycle(4, 250e6, 32))
    assert 1.19 < four.weight_word_cycles < 1.21


# -- the LM head on the device -----------------------------------------------------------------

def head_of(estimate):
    heads = [i for i in estimate.instructions if i.op == "HEAD"]
    assert len(heads) == 1
    return heads[0]


def with_vocab(config, vocab):
    return dataclasses.replace(config, model=dataclasses.replace(config.model, vocab_size=vocab))


@pytest.mark.parametrize("memory", ["onchip", "kv260"])
def test_the_head_reads_its_region_and_grows_with_its_words(memory):
    timing = port_timing(memory, TINY)
    estimates = {}
    for vocab in (TINY.model.vocab_size, 2 * TINY.model.vocab_size, 2 * TINY.model.vocab_size + 5):
        config = with_vocab(TINY, vocab)
        run = estimate_run(config, memory, 3, 2)
        head = head_of(run)
        words = HeadLayout(vocab, config.model.hidden, config.data_width).words
        # The whole head, as the compiler places it, counted as the head's reads.
        assert head.read_words == words == memory_plan(config).placement["head"][1]
        assert head.kind == "head" and head.written_words == 0
        assert run.words["head"] == {"read": words, "written": 0}
        assert run.counters()["head_words"] == words
        assert run.by_kind["head"] == head.cycles
        estimates[words] = head.cycles
    # Only the words term depends on the vocabulary: each more word costs the port's rate.
    (w0, c0), (w1, c1), (w2, c2) = sorted(estimates.items())
    assert w0 < w1 < w2 and c0 < c1 < c2
    assert c1 - c0 == pytest.approx((w1 - w0) * timing.word_cycles)
    assert c2 - c1 == pytest.approx((w2 - w1) * timing.word_cycles)


def test_the_head_scores_the_last_token_only_and_returns_k_beats():
    one, full = (head_of(estimate_run(TINY, "kv260", 0, t)) for t in (1, TINY.max_tokens))
    assert one.cycles == full.cycles and one.read_words == full.read_words
    more = dataclasses.replace(TINY, head_k=TINY.head_k + 3)
    assert head_of(estimate_run(more, "kv260", 0, 1)).cycles == one.cycles + 3
    # Its fixed part: the codes (hidden / lanes beats) hide the memory's latency at the
    # kv260 shape, and the score pipeline is 5 + log2(64 codes per word) cycles; its
    # 512-bit words (the weight port's: 1001 mantissa words and 24 per row) come at the
    # four HP ports' rate. The int4 head: 408,027 words (8,001 blocks of 3 mantissa words,
    # 12 words a row) and a tree of 64 codes per group, so the same score pipeline.
    four_ports = MEMORY_MODELS["kv260"].sustained_bytes_per_cycle(4, 250e6, 32)
    assert HeadLayout(LARGE.vocab_size, LARGE.hidden, 512).words == 1001 + 32_002 * 24
    assert head_of(estimate_run(KV260, "kv260", 63, 1)).terms == pytest.approx(
        {"codes": 192, "latency": 0, "words": 769_049 * 64 / four_ports, "score": 11,
         "results": KV260.head_k, "pipeline": CALIBRATION["head"]})
    int4 = KV260.with_head_format("int4")
    assert head_of(estimate_run(int4, "kv260", 63, 1)).terms == pytest.approx(
        {"codes": 192, "latency": 0, "words": (8_001 * 3 + 32_002 * 12) * 64 / four_ports,
         "score": 11, "results": KV260.head_k, "pipeline": CALIBRATION["head"]})


@pytest.mark.parametrize("tokens", [1, 5, 8])
def test_the_one_token_store_moves_one_vector(tokens):
    run = estimate_run(TINY, "onchip", 0, tokens)
    stores = [i for i in run.instructions if i.op == "STORE"]
    states, top, choice = stores
    assert states.written_words == tokens * TINY.model.hidden // TINY.lanes
    assert top.written_words == TINY.head_k                 # whatever the tokens
    assert choice.written_words == 1                        # the next step's input
    assert run.words["move"]["written"] == states.written_words + TINY.head_k + 1
    assert [i.op for i in run.instructions[-6:]] == ["STORE", "NORM", "HEAD", "STORE", "STORE",
                                                     "END"]


@pytest.mark.parametrize("config", [ACCELERATOR_PRESETS["ulx3s"],
                                    dataclasses.replace(TINY, head="host")],
                         ids=["ulx3s", "tiny-host-head"])
def test_a_host_head_design_has_no_head(config):
    run = estimate_run(config, "onchip", 4, 1)
    assert "HEAD" not in [i.op for i in run.instructions]
    assert [i.op for i in run.instructions[-2:]] == ["STORE", "END"]
    assert run.by_kind["head"] == 0 and run.words["head"] == {"read": 0, "written": 0}
    assert "head" not in memory_plan(config).placement
    result = project(board_setup(MODEL_PRESETS["tiny"], BOARDS["ulx3s-85f"], config),
                     MODEL_PRESETS["tiny"], [64], [8])
    assert result["head"]["where"] == "host"
    for item in result["decode"] + result["ttft"]:
        assert "head" not in item["parts"] and item["parts"]["lm_head"]["seconds"] > 0


def test_a_device_head_leaves_the_host_one_word_per_decode_token():
    tiny = MODEL_PRESETS["tiny"]
    host = dataclasses.replace(HOSTS["ulx3s-85f"], bulk_through_memory=False)
    device = host_run_seconds(tiny, TINY, host, 1, head_rows=1)
    on_host = host_run_seconds(tiny, dataclasses.replace(TINY, head="host"), host, 1,
                               head_rows=1)
    assert device["lm_head"] == 0 and on_host["lm_head"] > 0
    # The argmax's word instead of the 512 bytes of hidden state, everything else equal.
    assert device["link_bytes"] < 1024
    assert on_host["link_bytes"] - device["link_bytes"] == tiny.hidden * 4 - 32
    assert device["link"] < on_host["link"]
    # A prefill run that does not end the prompt reads nothing back: no READ frame.
    silent = host_run_seconds(tiny, TINY, host, 1)
    assert silent["link_bytes"] < device["link_bytes"] - 32
    assert device["link"] - silent["link"] >= host.frame_seconds


def test_the_kv260_projection_runs_no_head_on_the_host():
    result = project(board_setup(LARGE, BOARDS["kv260"]), LARGE, [64])
    assert result["head"] == {"where": "device", "k": KV260.head_k,
                              "host_read_bytes_per_decode_token": 32, "label": "derived"}
    decode = result["decode"][0]
    parts = decode["parts"]
    # Device embedding and head: nothing of the model runs on the host.
    assert parts["lm_head"]["seconds"] == 0
    assert decode["host_seconds"] == pytest.approx(parts["link"]["seconds"])
    # The id in, the 64 steps' choices out, once a run of 64 steps: a 64th a token.
    assert decode["steps"] == 64
    assert parts["link"]["memory_bytes"] == (32 + 64 * 32) / 64
    # HEAD streams the 49.2 MB head through the 512-bit weight port at the four HP ports'
    # rate (13.33 GB/s): more than its bytes' time.
    head_bytes = HeadLayout(LARGE.vocab_size, LARGE.hidden, 512).words * 64
    assert parts["head"]["seconds"] > head_bytes / 13.33e9
    assert decode["fabric_seconds"] == pytest.approx(sum(
        parts[name]["seconds"] for name in ("linears", "attention", "element-wise", "control",
                                            "head")))
    assert any("runs no LM head on the host" in note for note in result["notes"])


def test_the_recorded_reports_ran_a_host_head_but_their_closing_head_run():
    """The runs of the recorded reports took the program without the head; only the
    e2e reports' closing decode step with HEAD and their run of greedy steps ran the
    design's own (device) head, in the format the report names."""
    for case in RECORDED:
        with_head = "with HEAD" in case.name or case.steps > 1
        assert ("greedy steps" in case.name) == (case.steps > 1), case.name
        assert case.config.head == ("device" if with_head else "host"), case.name
        if with_head:
            assert case.config.head_format in case.name
    assert sum("with HEAD" in case.name for case in RECORDED) >= 3   # tiny, kv260, int4
    report = {"config": "tiny", "runs": [{"kind": "decode", "position": 3, "tokens": 1,
                                          "counters": {}}]}
    assert report_cases(report)[0].config.head == "host"
    assert report_cases({**report, "head": "device"})[0].config.head == "device"


# -- against the simulation ------------------------------------------------------------------

def assert_agrees(case):
    row = compare_run(case)
    assert abs(row["cycles"]["error"]) <= TOLERANCE, row
    for kind, words in row["words"].items():
        assert words["simulated"] == words["model"], (kind, row)
    return row


@pytest.mark.skipif(not RECORDED, reason="no recorded simulations in docs/")
@pytest.mark.parametrize("case", RECORDED, ids=lambda case: case.name)
def test_the_model_agrees_with_every_recorded_simulation(case):
    """docs/bench-layer-kv260.json (one full-size layer), docs/bench-e2e-kv260.json (the
    whole BitNet-0.7B) and docs/bench-e2e-tiny.json, as bench/ wrote them."""
    row = assert_agrees(case)
    for kind in ("linear", "attend"):              # the kinds that make up the time
        assert abs(row["kinds"][kind]["error"]) <= TOLERANCE, (kind, row)


@pytest.mark.cosim
def test_the_model_agrees_with_the_simulated_tiny_top():
    """The tiny model on the simulated tiny top (Verilator, the same cached simulator as
    tests/cosim/test_accelerator_sim.py): full and partial prompt runs, then decode
    steps, each run's counters against the model's within 5%. The prompt's runs take
    the program without the head (``prefill``), the decode steps the one with HEAD
    (``prefill_top``)."""
    from tritium.host.accelerator import Accelerator
    from tritium.host.sim_transport import SimTransport
    rng = np.random.default_rng(5)
    cases = []
    with Accelerator(TINY, SimTransport(TINY), timeout=600) as accelerator:
        accelerator.load(load_model("tiny"))
        runs = [(0, 8), (8, 8), (16, 3)] + [(19 + step, 1) for step in range(3)]
        for position, tokens in runs:
            assert accelerator.position == position
            ids = rng.integers(0, 256, tokens).tolist()
            head = tokens == 1
            accelerator.prefill_top(ids) if head else accelerator.prefill(ids)
            counters = accelerator.counters()
            assert counters["status"] == 0 and (counters["head_cycles"] > 0) == head
            cases.append(SimulatedCase(f"tiny {tokens} at {position}", "simulation", TINY,
                                       "onchip", "onchip", position, tokens, counters, head))
    rows = [assert_agrees(case) for case in cases]
    assert all(row["kinds"]["linear"]["error"] is not None for row in rows)


# -- designs, boards and projections ----------------------------------------------------------

def test_the_2b_model_does_not_fit_the_kv260_preset_and_says_by_how_much():
    problems = fit_problems(TWO_B, KV260)
    text = "; ".join(problems)
    for expected in ("hidden 2560 (built for 1536)", "heads 20 (built for 16)",
                     "TLMM max_k 4128 < 6912 (2784 short)", "TLMM max_n 4096 < 6912 (2816 short)",
                     "context 4096 tokens (the KV cache holds 2048)", "KV cache", "memory"):
        assert expected in text
    assert fit_problems(LARGE, KV260) == []
    assert fit_problems(MODEL_PRESETS["tiny"], ACCELERATOR_PRESETS["ulx3s"]) == []


def test_a_config_derived_for_the_2b_model_holds_it():
    derived = derive_config(KV260, TWO_B)
    assert fit_problems(TWO_B, derived) == []
    assert (derived.lanes, derived.tlmm.tables, derived.max_tokens, derived.clock_hz) == \
        (KV260.lanes, KV260.tlmm.tables, KV260.max_tokens, KV260.clock_hz)
    assert derived.tlmm.max_k == derived.tlmm.max_n == 6912
    # 616 MB of model and cache, and the 0.66 GB 16-bit embedding table (device embedding).
    assert derived.memory_words == 2 ** 26
    # The kv260-2b preset is that design, written out in hw/config.py, without the weight
    # queue: the 2B model's buffers leave no UltraRAM for it (docs/boards.md).
    assert dataclasses.replace(derive_config(KV260, TWO_B, name="kv260-2b"), weight_queue=0) \
        == ACCELERATOR_PRESETS["kv260-2b"]


def test_board_setups():
    from tritium.boards.kv260 import MAX_BUFFER_BYTES
    kv260, ulx3s = BOARDS["kv260"], BOARDS["ulx3s-85f"]
    assert kv260.memory_bytes == MAX_BUFFER_BYTES and kv260.memory == "kv260"
    assert ulx3s.memory == "onchip" and ulx3s.memory_bytes is None
    assert board_setup(LARGE, kv260).config_kind == "preset"
    assert board_setup(MODEL_PRESETS["tiny"], ulx3s).config is ACCELERATOR_PRESETS["ulx3s"]
    # The 2B model gets the board's preset for it; a shape no preset holds, a derived one.
    two_b = board_setup(TWO_B, kv260)
    assert two_b.config is ACCELERATOR_PRESETS["kv260-2b"] and two_b.config_kind == "board preset"
    assert kv260.presets == ("kv260-2b",) and preset_memory("kv260-2b") == "kv260"
    assert preset_memory("tiny") == preset_memory("ulx3s") == "onchip"
    wider = dataclasses.replace(TWO_B, name="wider", ffn=7680)
    derived = board_setup(wider, kv260)
    assert derived.config_kind == "derived" and "unchecked" in derived.notes[0]
    with pytest.raises(ValueError, match=r"need 299\.3 MB of memory, the board holds 0\.3 MB"):
        board_setup(LARGE, ulx3s)
    with pytest.raises(ValueError, match="does not fit accelerator 'kv260': hidden 2560"):
        board_setup(TWO_B, kv260, KV260)


def test_link_traffic_is_the_runs_frames():
    # Embeddings in (one WRITE), RUN with its tag, position and tokens (its reply the
    # status, run counter and cycles), hidden states out (one READ).
    traffic = link_traffic(ACCELERATOR_PRESETS["ulx3s"], 1)
    assert traffic["frames"] == 3 and traffic["payload"] == 2 * 128 * 4
    assert traffic["payload"] < traffic["to_device"] + traffic["from_device"] < 1.2 * 1024
    # The kv260 preset embeds on the device: one word of token id in (one WRITE); its
    # 4 KiB frames take the 6 KiB of hidden states out in two READs.
    # With the LM head on the host the run's hidden states come back.
    host_head = dataclasses.replace(KV260, head="host")
    traffic = link_traffic(host_head, 1)
    assert traffic["frames"] == 4 and traffic["payload"] == 32 + 1536 * 4
    # Through the Zynq's DDR buffer, the io region leaves the link: RUN alone, 17 bytes
    # (END, header, 7 bytes, CRC, END) and its 18-byte reply.
    bulk = link_traffic(host_head, 1, bulk_through_memory=True)
    assert bulk["frames"] == 1 and bulk["memory_bytes"] == traffic["payload"]
    assert bulk["to_device"] + bulk["from_device"] == 35
    # A prompt's first and last runs also switch programs: a SET each (15 bytes, its
    # reply 9).
    switch = link_traffic(host_head, 1, bulk_through_memory=True, program_sets=1)
    assert switch["frames"] == 2 and switch["to_device"] + switch["from_device"] == 35 + 24
    # With the head on the device (the preset) the host reads the top-k: head_k words in
    # one READ, or the argmax's word alone, or nothing after a prompt's earlier runs.
    assert KV260.head == "device"
    for read_words, frames in ((None, 3), (1, 3), (0, 2)):
        top = link_traffic(KV260, 1, read_words=read_words)
        words = KV260.head_k if read_words is None else read_words
        assert top["read_bytes"] == words * 32 and top["payload"] == 32 + words * 32
        assert top["frames"] == frames
    assert link_traffic(KV260, 1, bulk_through_memory=True, read_words=1)["memory_bytes"] == 64


def test_a_projection_labels_every_part():
    setup = board_setup(LARGE, BOARDS["kv260"])
    result = project(setup, LARGE, [64, 1024], simulated=simulated_cases(
        layer=LAYER_JSON) if LAYER_JSON.is_file() else ())
    assert json.loads(json.dumps(result)) == result
    assert [d["context"] for d in result["decode"]] == [64, 1024]
    assert [t["prompt"] for t in result["ttft"]] == [64, 128]
    for item in result["decode"] + result["ttft"]:
        labels = {name: part["label"] for name, part in item["parts"].items()}
        # The kv260 preset's LM head is on the device: HEAD is fabric time ("head").
        assert labels == {"linears": "derived", "attention": "derived", "element-wise": "derived",
                          "control": "derived", "head": "derived", "lm_head": "assumed",
                          "link": "assumed"}
        assert item["seconds"] == pytest.approx(sum(p["seconds"] for p in item["parts"].values()))
        roof = item["roofline"]       # the preset uses all four HP ports
        assert roof["all_ports"]["seconds"] == roof["ports_used"]["seconds"] < item["seconds"]
    assert result["decode"][0]["tokens_per_s"] > result["decode"][1]["tokens_per_s"]
    assert result["ttft"][1]["runs"] == 16
    with pytest.raises(ValueError, match="beyond model 'bitnet-b1.58-large'"):
        project(setup, LARGE, [4096])


def test_every_host_states_its_assumptions():
    for name, host in HOSTS.items():
        assert name in BOARDS and host.notes
        assert host.stream_bytes_per_second > 0 and host.frame_seconds > 0


# -- shapes from checkpoints -------------------------------------------------------------------

def test_a_shape_from_each_checkpoint_format(tmp_path, bitnet_large_checkpoint):
    small = dataclasses.replace(MODEL_PRESETS["tiny"], name="small", layers=2, max_context=48)
    Model.random(small, seed=1).save_npz(tmp_path / "small.npz")
    assert read_model_config(tmp_path / "small.npz") == small
    for preset in ("tiny", "bitnet-b1.58-large", "bitnet-b1.58-2b-4t"):
        assert read_model_config(preset) == MODEL_PRESETS[preset]
    directory = bitnet_large_checkpoint(tmp_path / "bitnet-b1.58-large")
    assert read_model_config(directory) == LARGE
    assert read_model_config(directory / "config.json") == LARGE
    # GGUF: the metadata and the embedding's shape; no other tensor is needed.
    path = tmp_path / "shape.gguf"
    writer = GGUFWriter(str(path), "bitnet")
    for key, value in {"context_length": 256, "embedding_length": 128, "block_count": 4,
                       "feed_forward_length": 384, "attention.head_count": 4,
                       "attention.head_count_kv": 2, "rope.freq_base": 10000.0,
                       "attention.layer_norm_rms_epsilon": 1e-5}.items():
        (writer.add_float32 if isinstance(value, float) else writer.add_uint32)(
            f"bitnet.{key}", value)
    writer.add_tensor("token_embd.weight", np.zeros((256, 128), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert read_model_config(path) == dataclasses.replace(
        MODEL_PRESETS["tiny"], name="shape", tied_embedding=True)
