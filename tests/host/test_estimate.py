"""`tritium estimate`: every named model on every board (or the reason it cannot run
there), its JSON and plot, and a one-line error with exit status 2 for every bad input."""

import builtins
import json

import pytest

from tritium.cli.testing import assert_one_line_error, run_cli

MODELS = ("tiny", "bitnet-b1.58-large", "bitnet-b1.58-2b-4t")
# What each (model, board) gets: the board's preset, its preset for that model, the
# preset resized to the model, or a refusal naming the resource.
EXPECTED = {
    ("tiny", "ulx3s-85f"): "preset",
    ("tiny", "kv260"): "derived",
    ("bitnet-b1.58-large", "kv260"): "preset",
    ("bitnet-b1.58-2b-4t", "kv260"): "board preset",
    ("bitnet-b1.58-large", "ulx3s-85f"): "need 299.3 MB of memory, the board holds 0.3 MB",
    ("bitnet-b1.58-2b-4t", "ulx3s-85f"): "need 598.3 MB of memory, the board holds 0.3 MB",
}


@pytest.mark.parametrize("model, board", EXPECTED, ids="{0[0]}@{0[1]}".format)
def test_every_model_on_every_board(capsys, model, board):
    expected = EXPECTED[model, board]
    if expected not in ("preset", "board preset", "derived"):
        assert_one_line_error(capsys, "estimate", "--model", model, "--board", board,
                              match=expected)
        return
    code, out, _ = run_cli(capsys, "estimate", "--model", model, "--board", board, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["config_kind"] == expected and result["model"] == model
    assert all(d["tokens_per_s"] > 0 for d in result["decode"])
    code, out, _ = run_cli(capsys, "estimate", "--model", model, "--board", board)
    assert code == 0 and "tokens/s" in out and "time to first token" in out
    if expected == "derived":
        assert "derived from the board's preset" in out and "unchecked" in out
    if expected == "board preset":
        assert "the board's preset for it" in out and "unchecked" not in out


def test_the_table_names_every_part_and_its_label(capsys):
    code, out, _ = run_cli(capsys, "estimate", "--model", "bitnet-b1.58-large", "--board",
                           "kv260", "--context", "64,512,1024")
    assert code == 0
    for line in ("linears", "attention", "element-wise (norm, gate)", "control (fetch, move)"):
        assert any(row.strip().startswith(line) and "derived" in row for row in out.splitlines())
    for line in ("LM head + embedding (host)", "host link"):
        assert any(row.strip().startswith(line) and "assumed" in row for row in out.splitlines())
    assert "context 64" in out and "context 1024" in out and "64 tokens" in out
    assert ("memory model kv260 on 4 ports, striped; the weights, the head and the KV "
            "cache's reads through a 512-bit port on all of them, the other units through 2") in out
    # The preset reads through all four HP ports: one roofline, theirs.
    assert "memory roofline, 4 ports (13.33 GB/s)" in out and "2 ports" not in out


@pytest.mark.parametrize("model", ["bitnet-b1.58-large", "bitnet-b1.58-2b-4t"])
def test_the_int4_head_halves_the_heads_time(capsys, model):
    """--head-format int4: the board's design with the int4 head (named for it); the
    device head's time is its bytes at the same rate, so a little over half the int8
    head's (the mantissas of every 64 codes), and nothing else changes."""
    times = {}
    for head in ("int8", "int4"):
        code, out, _ = run_cli(capsys, "estimate", "--model", model, "--board", "kv260",
                               "--context", "64", "--head-format", head, "--json")
        assert code == 0
        result = json.loads(out)
        assert result["config"].endswith("-int4") == (head == "int4")
        parts = result["decode"][0]["parts"]
        times[head] = {part: figure["seconds"] for part, figure in parts.items()}
        assert any(("int4 weights, a scale per 64 dims" in note) == (head == "int4")
                   and "runs on the device" in note for note in result["notes"])
    assert 0.5 < times["int4"]["head"] / times["int8"]["head"] < 0.55
    assert {p: t for p, t in times["int4"].items() if p != "head"} == \
        {p: t for p, t in times["int8"].items() if p != "head"}


def test_runs_of_several_steps_pay_the_hosts_frames_once(capsys):
    """A design that chooses its own tokens decodes 64 steps a run by default: the same
    fabric time per token, the link's a 64th of a run per token (--steps 1)."""
    figures = {}
    for steps in (None, 1, 8):
        argv = ["--steps", str(steps)] if steps else []
        code, out, _ = run_cli(capsys, "estimate", "--model", "bitnet-b1.58-large",
                               "--board", "kv260", "--context", "64", "--json", *argv)
        assert code == 0
        figures[steps] = json.loads(out)["decode"][0]
    assert [figures[s]["steps"] for s in (None, 1, 8)] == [64, 1, 8]
    link = {s: f["parts"]["link"]["seconds"] for s, f in figures.items()}
    assert link[1] == pytest.approx(8 * link[8], rel=0.05)
    assert link[1] == pytest.approx(64 * link[None], rel=0.05)
    assert len({f["fabric_seconds"] for f in figures.values()}) == 1
    assert figures[None]["tokens_per_s"] > figures[8]["tokens_per_s"] > figures[1]["tokens_per_s"]


def test_json_is_one_object_with_the_requested_contexts(capsys):
    code, out, _ = run_cli(capsys, "estimate", "--model", "tiny", "--board", "ulx3s-85f",
                           "--context", "1,100,256", "--json")
    assert code == 0
    result = json.loads(out)
    assert [d["context"] for d in result["decode"]] == [1, 100, 256]
    assert result["config"] == "ulx3s" and result["memory_model"] == "onchip"
    assert result["host"]["label"] == "assumed" and result["host"]["notes"]


def test_a_config_given_and_a_checkpoint_path(capsys, tmp_path, bitnet_large_checkpoint):
    directory = bitnet_large_checkpoint(tmp_path / "bitnet_b1_58-large")
    code, out, _ = run_cli(capsys, "estimate", "--model", directory, "--board", "kv260",
                           "--config", "kv260", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["config_kind"] == "given" and result["model"] == "bitnet_b1_58-large"


def test_plot_writes_a_png(capsys, tmp_path):
    path = tmp_path / "estimate.png"
    code, out, _ = run_cli(capsys, "estimate", "--model", "tiny", "--board", "ulx3s-85f",
                           "--plot", path, "--json")
    assert code == 0 and json.loads(out)["plot"] == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, match", [
    (["--model", "nope", "--board", "kv260"],
     "nope: no such file or directory, and not a model preset (bitnet-b1.58-large, "
     "bitnet-b1.58-2b-4t, tiny)"),
    (["--model", "tiny", "--board", "nope"], "unknown board 'nope' (supported: ulx3s-85f, kv260)"),
    (["--model", "bitnet-b1.58-2b-4t", "--board", "kv260", "--config", "kv260"],
     "TLMM max_k 4128 < 6912 (2784 short); TLMM max_n 4096 < 6912 (2816 short)"),
    (["--model", "bitnet-b1.58-large", "--board", "kv260", "--config", "tiny"],
     "does not fit accelerator 'tiny': hidden 1536 (built for 128)"),
    (["--model", "bitnet-b1.58-large", "--board", "kv260", "--context", "64,4096"],
     "--context 4096 is beyond the maximum context of 2048 tokens"),
    (["--model", "tiny", "--board", "ulx3s-85f", "--context", "300"],
     "--context 300 is beyond the maximum context of 256 tokens"),
    (["--model", "tiny", "--board", "ulx3s-85f", "--context", "64,,x"],
     "--context takes comma-separated positive integers"),
    (["--model", "tiny", "--board", "ulx3s-85f", "--context", "0"],
     "--context takes comma-separated positive integers"),
    (["--model", "tiny", "--board", "ulx3s-85f", "--config", "nope"],
     "unknown accelerator config 'nope'"),
    (["--model", "bitnet-b1.58-large", "--board", "kv260", "--steps", "65"],
     "--steps 65: accelerator 'kv260' makes 1 .. 64 decode steps a run"),
    (["--model", "bitnet-b1.58-large", "--board", "kv260", "--steps", "0"],
     "--steps 0: accelerator 'kv260' makes 1 .. 64 decode steps a run"),
    (["--model", "tiny", "--board", "ulx3s-85f", "--steps", "2"],
     "--steps 2: accelerator 'ulx3s' makes one decode step a run"),
])
def test_bad_input_is_one_line(capsys, argv, match):
    assert_one_line_error(capsys, "estimate", *argv, match=match)


def test_bad_plot_paths_are_one_line(capsys, tmp_path):
    base = ["estimate", "--model", "tiny", "--board", "ulx3s-85f", "--plot"]
    assert_one_line_error(capsys, *base, tmp_path, match="is a directory")
    assert_one_line_error(capsys, *base, tmp_path / "plot.svg", match="give a path ending in .png")
    assert_one_line_error(capsys, *base, tmp_path / "missing" / "plot.png",
                          match="does not exist")


def test_plot_without_matplotlib_is_one_line(capsys, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert_one_line_error(capsys, "estimate", "--model", "tiny", "--board", "ulx3s-85f",
                          "--plot", tmp_path / "p.png", match="--plot needs matplotlib")
