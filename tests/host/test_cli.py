"""The tritium command line: outputs, and one-line errors with exit status 2 for bad input."""

import dataclasses
import json
import shutil
import subprocess

import numpy as np
import pytest

from tritium.hw.config import MODEL_PRESETS
from tritium.cli.testing import assert_one_line_error, run_cli
from tritium.host.model import Model
from tritium.sim.golden.model import GoldenModel

SMALL = dataclasses.replace(MODEL_PRESETS["tiny"], name="small", layers=2, max_context=48)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "small.npz"
    Model.random(SMALL, seed=11).save_npz(path)
    return path


def test_run_json_is_one_object(capsys, model_file):
    code, out, _ = run_cli(capsys, "run", "--model", model_file, "--prompt", "Hello", "-n", 5,
                           "--json")
    assert code == 0
    result = json.loads(out)
    assert result["backend"] == "golden" and result["model"] == "small"
    assert len(result["tokens"]) == 5 and result["prompt_tokens"] == 5
    assert all(0 <= t < 256 for t in result["tokens"])


def test_run_on_the_device_model_claims_no_cycles(capsys):
    """The software device model counts no cycles: the summary says so instead of
    printing zero cycles and an infinite rate."""
    code, out, err = run_cli(capsys, "run", "--model", "tiny", "--prompt", "Hi", "-n", 3,
                             "--backend", "model")
    assert code == 0 and out.startswith("Hi")
    assert "[model: no cycle counters; every top-k matches the golden model]" in err
    assert "0 cycles" not in err


def test_run_with_the_int4_head_on_the_device_model(capsys):
    """--head-format int4: the tiny design with its head in int4 ('tiny-int4'); every
    top-k, rows and integer scores, matches the golden model's with the same head."""
    code, out, err = run_cli(capsys, "run", "--model", "tiny", "--prompt", "Hi", "-n", 4,
                             "--backend", "model", "--head-format", "int4", "--json")
    result = json.loads(out)
    assert code == 0 and result["config"] == "tiny-int4" and result["head_format"] == "int4"
    assert result["matches_golden"] is True


def test_run_without_the_check_reads_the_argmax_alone(capsys):
    """--no-check: the same tokens as the golden backend, no golden comparison claimed,
    and the decode tokens come from one run of five steps, whose choices (a word each)
    are read after it: under 200 link bytes a token, against a run per token that
    reads the whole top-k with the check."""
    argv = ("run", "--model", "tiny", "--prompt", "Hi there", "-n", 6, "--json")
    _, out, _ = run_cli(capsys, *argv, "--backend", "model", "--no-check")
    fast = json.loads(out)
    _, out, _ = run_cli(capsys, *argv, "--backend", "model")
    checked = json.loads(out)
    _, out, _ = run_cli(capsys, *argv)
    assert fast["tokens"] == checked["tokens"] == json.loads(out)["tokens"]
    assert fast["matches_golden"] is None and checked["matches_golden"] is True
    assert fast["link_bytes_per_decode_token"] < 200
    assert checked["decode_steps_each"] == [1] * 5 and fast["decode_steps_each"] == [5]
    assert fast["link_bytes_per_decode_token"] < checked["link_bytes_per_decode_token"] / 3
    code, _, err = run_cli(capsys, *argv[:-1], "--backend", "model", "--no-check")
    assert code == 0 and "not checked against the golden model" in err


def test_run_streams_prompt_and_text(capsys, model_file):
    code, out, err = run_cli(capsys, "run", "--model", model_file, "--prompt", "Hi", "-n", 3)
    assert code == 0 and out.startswith("Hi")
    assert "3 generated" in err


def test_run_matches_golden_greedy(capsys, model_file):
    _, out, _ = run_cli(capsys, "run", "--model", model_file, "--prompt", "abc", "-n", 4,
                        "--json", "--backend", "reference")
    tokens = json.loads(out)["tokens"]
    golden = GoldenModel(Model.load_npz(model_file))
    cache, ids = golden.new_cache(), [97, 98, 99]
    expected = []
    logits = golden.forward(ids, cache)[-1]
    for _ in range(4):
        expected.append(int(np.argmax(logits)))
        logits = golden.forward(expected[-1:], cache)[-1]
    _, out, _ = run_cli(capsys, "run", "--model", model_file, "--prompt", "abc", "-n", 4, "--json")
    assert json.loads(out)["tokens"] == expected
    assert len(tokens) == 4


def test_eval_text_and_logits(capsys, model_file, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("Once upon a time there was a cat.\n" * 3)
    code, out, _ = run_cli(capsys, "eval", "--model", model_file, "--text", text, "--json",
                           "--window", 40)
    result = json.loads(out)
    assert code == 0 and result["perplexity"] > 1 and result["tokens"] == 102 - 3
    logits_file = tmp_path / "logits.npy"
    code, out, _ = run_cli(capsys, "eval", "--model", model_file, "--tokens", "1,2,3,250",
                           "--logits", logits_file, "--json")
    logits = np.load(logits_file)
    assert code == 0 and logits.shape == (4, 256)
    golden = GoldenModel(Model.load_npz(model_file))
    assert np.array_equal(logits, golden.forward([1, 2, 3, 250], golden.new_cache()))
    assert json.loads(out)["argmax"] == logits.argmax(axis=-1).tolist()


def test_info_json(capsys, model_file):
    code, out, _ = run_cli(capsys, "info", "--model", model_file, "--json")
    info = json.loads(out)
    assert code == 0 and info["hidden"] == 128 and info["tokenizer"] == "ByteTokenizer"
    assert info["ternary_weights"] == 2 * SMALL.ternary_weights_per_layer


def test_bad_numbers_and_prompts(capsys, model_file):
    assert_one_line_error(capsys, "run", "--model", model_file, "--prompt", "x", "-n", 0,
                          match="-n must be at least 1")
    assert_one_line_error(capsys, "run", "--model", model_file, "--prompt", "x" * 60,
                          match="context")
    assert_one_line_error(capsys, "run", "--model", model_file, "--prompt", "x" * 40, "-n", 20,
                          match="exceeds the context")
    assert_one_line_error(capsys, "eval", "--model", model_file, "--tokens", "1,256",
                          match="token id 256 is out of range")
    assert_one_line_error(capsys, "eval", "--model", model_file, "--tokens", "1,-3",
                          match="token id -3 is out of range")
    assert_one_line_error(capsys, "eval", "--model", model_file, "--tokens", "1,x",
                          match="comma-separated integers")
    assert_one_line_error(capsys, "eval", "--model", model_file, "--text", "/nonexistent.txt",
                          match="no such file")
    assert_one_line_error(capsys, "eval", "--model", model_file, "--tokens", "1,2",
                          "--logits", "/nonexistent/dir/out.npy", match="cannot write the logits")


def damaged_copy(tmp_path, model_file, edit):
    with np.load(model_file) as data:
        arrays = {key: data[key] for key in data.files}
    edit(arrays)
    path = tmp_path / "damaged.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("edit, match", [
    (lambda a: a.pop("layers.1.wk.codes"), "layers.1.wk.codes is missing"),
    (lambda a: a.__setitem__("layers.0.wq.codes", np.zeros((3, 3), np.int8)), "shape"),
    (lambda a: a["layers.0.w_up.codes"].__setitem__((0, 0), 2), "not ternary"),
    (lambda a: a.__setitem__("layers.0.wo.scale", np.array(np.nan)), "scale"),
    (lambda a: a.__setitem__("layers.0.wo.scale", np.array(np.inf)), "scale"),
])
def test_damaged_models(capsys, tmp_path, model_file, edit, match):
    path = damaged_copy(tmp_path, model_file, edit)
    assert_one_line_error(capsys, "info", "--model", path, match=match)


def test_bad_model_files(capsys, tmp_path, model_file):
    assert_one_line_error(capsys, "info", "--model", tmp_path / "missing.npz", match="missing.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(model_file.read_bytes()[:1000])
    assert_one_line_error(capsys, "info", "--model", truncated, match="truncated.npz")
    unknown = tmp_path / "weights.txt"
    unknown.write_text("hello")
    assert_one_line_error(capsys, "info", "--model", unknown, match="weights.txt")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    assert_one_line_error(capsys, "info", "--model", hf, match="GPT2LMHeadModel")


def test_console_script_exit_codes(model_file):
    exe = shutil.which("tritium") or pytest.fail("the tritium console script is not installed")
    ok = subprocess.run([exe, "info", "--model", str(model_file), "--json"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout)["name"] == "small"
    bad = subprocess.run([exe, "run", "--model", str(model_file), "--prompt", "x", "-n", "-2"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("tritium: error: ")


def test_an_error_after_partial_output_starts_on_a_new_line(capsys, model_file, monkeypatch):
    """A run that fails mid-stream ends the half-written line of text before the error."""
    from tritium.host.errors import TritiumError
    from tritium.host.runtime import Session
    decode = Session.decode
    calls = []

    def failing(self, token):
        calls.append(token)
        if len(calls) == 2:
            raise TritiumError("the device went away")
        return decode(self, token)

    monkeypatch.setattr(Session, "decode", failing)
    code, out, err = run_cli(capsys, "run", "--model", model_file, "--prompt", "Hi", "-n", 5)
    assert code == 2 and out.startswith("Hi") and out.endswith("\n")
    assert err == "tritium: error: the device went away\n"


def test_demo_names_each_backend_for_what_it_is(capsys):
    """``model`` is the software device, not the float reference."""
    code, _, err = run_cli(capsys, "demo", "--backend", "model", "-n", 2)
    assert code == 0
    first = err.splitlines()[0]
    assert "software device" in first and "float" not in first and "golden" not in first


def test_an_empty_stop_string_is_refused(capsys, model_file):
    assert_one_line_error(capsys, "run", "--model", model_file, "--prompt", "Hi", "--stop", "",
                          match="--stop needs a non-empty string")


def test_run_says_why_it_stopped(capsys, model_file):
    """A byte model has no end-of-sequence token: -n tokens, or a --stop string."""
    code, out, err = run_cli(capsys, "run", "--model", model_file, "--prompt", "Hello", "-n", 4,
                             "--json")
    result = json.loads(out)
    assert code == 0 and result["stop"] == "max_tokens" and len(result["tokens"]) == 4
    stop = result["text"][1:3]
    code, out, err = run_cli(capsys, "run", "--model", model_file, "--prompt", "Hello", "-n", 4,
                             "--stop", stop)
    assert code == 0 and out == "Hello" + result["text"][:result["text"].index(stop)] + "\n"
    assert "generated (a --stop string)" in err
