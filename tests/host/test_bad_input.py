"""Bad input of every class ends in one line, ``tritium: error: ...``, exit status 2,
before anything slow (a simulator build, a device) starts (issue 14, item 6)."""

import dataclasses
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
from gguf import GGUFWriter

import tritium.host.sim_transport as sim_transport
import tritium.host.transports as transports
from tritium.cli import main
from tritium.cli.testing import assert_one_line_error
from tritium.host.errors import TritiumError
from tritium.host.model import Model
from tritium.hw.config import ACCELERATOR_PRESETS, MODEL_PRESETS

SMALL = dataclasses.replace(MODEL_PRESETS["tiny"], name="small", layers=1, max_context=48)
DEEP = "[" * 100_000


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "small.npz"
    Model.random(SMALL, seed=3).save_npz(path)
    return path


@pytest.fixture
def no_device(monkeypatch):
    """Fail the test if any transport is opened or the simulator starts building."""
    def refuse(*args, **kwargs):
        raise AssertionError("a transport was opened before the input was checked")
    monkeypatch.setattr(transports, "open_transport", refuse)
    monkeypatch.setattr(sim_transport.SimTransport, "__init__", refuse)


# 1. Text that is not UTF-8 --------------------------------------------------------------

def test_prompt_not_utf8(capsys, model_file, tmp_path):
    prompt = b"caf\xe9".decode("utf-8", "surrogateescape")   # how argv holds bad bytes
    assert_one_line_error(capsys, "run", "--model", model_file, "--prompt", prompt,
                          match="--prompt is not valid UTF-8 (byte 0xe9 at character 3)")
    assert_one_line_error(capsys, "run", "--model", model_file, "--prompt", "a\ud800",
                          match="--prompt is not valid UTF-8 (U+D800 at character 1)")
    text = tmp_path / "latin1.txt"
    text.write_bytes("café au lait".encode("latin-1"))
    assert_one_line_error(capsys, "eval", "--model", model_file, "--text", text,
                          match="not valid UTF-8 text (byte 0xe9 at offset 3)")


def test_tokenizer_refuses_undecodable_text():
    from tritium.host.errors import InputError
    from tritium.host.tokenizer import ByteTokenizer
    with pytest.raises(InputError, match="not valid UTF-8"):
        ByteTokenizer().encode(b"\xff".decode("utf-8", "surrogateescape"))


# 2. Deeply nested JSON ------------------------------------------------------------------

HF_CONFIG = {"architectures": ["BitNetForCausalLM"], "hidden_size": 128,
             "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 256,
             "vocab_size": 256, "max_position_embeddings": 48}


def hf_directory(tmp_path, config=None, header=None):
    directory = tmp_path / "hf"
    directory.mkdir()
    (directory / "config.json").write_text(config if isinstance(config, str)
                                           else json.dumps({**HF_CONFIG, **(config or {})}))
    if header is not None:
        raw = header.encode() if isinstance(header, str) else json.dumps(header).encode()
        (directory / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw
                                                      + bytes(64))
    return directory


def test_deeply_nested_json(capsys, tmp_path, model_file):
    directory = hf_directory(tmp_path, config=DEEP)
    for command in ("info", "estimate"):
        extra = ["--board", "kv260"] if command == "estimate" else []
        assert_one_line_error(capsys, command, "--model", directory, *extra,
                              match="nested too deeply")
    other = tmp_path / "other"
    other.mkdir()
    directory = hf_directory(other, header=DEEP)
    assert_one_line_error(capsys, "info", "--model", directory, match="nested too deeply")
    config = tmp_path / "deep.json"
    config.write_text(DEEP)
    assert_one_line_error(capsys, "generate", "--config", config, "-o", tmp_path / "out",
                          match="nested too deeply")
    assert_one_line_error(capsys, "run", "--model", model_file, "--prompt", "x",
                          "--backend", "model", "--config", config, match="nested too deeply")


# 3. Impossible shapes and types in checkpoints -----------------------------------------

def npz_copy(tmp_path, model_file, **changes):
    with np.load(model_file) as data:
        arrays = {key: data[key] for key in data.files}
    arrays.update(changes)
    path = tmp_path / "changed.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("changes, match", [
    ({"layers.0.wq.scale": np.array([0.5, 0.5])}, "layers.0.wq.scale must be a number"),
    ({"layers.0.wq.scale": np.array("0.5")}, "layers.0.wq.scale must be a number"),
    ({"format_version": np.array("1")}, "format_version must be an integer"),
    ({"config": np.array([1, 2])}, "config must be a JSON string"),
    ({"config": np.array("[" * 100_000)}, "nested too deeply"),
    ({"embedding": np.full((256, 128), "x")}, "embedding has dtype <U1"),
    ({"layers.0.wq.codes": np.zeros((128, 128), np.float32)}, "not ternary"),
])
def test_npz_fields_of_the_wrong_kind(capsys, tmp_path, model_file, changes, match):
    path = npz_copy(tmp_path, model_file, **changes)
    assert_one_line_error(capsys, "info", "--model", path, match=match)


@pytest.mark.parametrize("config, match", [
    ({"tie_word_embeddings": "false"}, "tie_word_embeddings must be true or false, not 'false'"),
    ({"hidden_size": "128"}, "hidden_size must be an integer, not '128'"),
    ({"max_position_embeddings": 2048.0}, "max_position_embeddings must be an integer"),
    ({"num_hidden_layers": True}, "num_hidden_layers must be an integer, not True"),
    ({"hidden_act": ["silu"]}, "hidden_act must be a string"),
    ({"quantization_config": "bitnet"}, "quantization_config must be a JSON object"),
])
def test_hf_config_types(capsys, tmp_path, config, match):
    assert_one_line_error(capsys, "info", "--model", hf_directory(tmp_path, config=config),
                          match=match)


@pytest.mark.parametrize("header, match", [
    ({"model.norm.weight": {"dtype": "F32", "shape": [-4, -4], "data_offsets": [0, 64]}},
     "negative dimension"),
    ({"model.norm.weight": {"dtype": "F32", "shape": ["16"], "data_offsets": [0, 64]}},
     "malformed header entry"),
    ({"model.embed_tokens.weight": {"dtype": "I8", "shape": [256, 128],
                                    "data_offsets": [0, 64]}}, "needs 32768 bytes"),
])
def test_safetensors_headers(capsys, tmp_path, header, match):
    assert_one_line_error(capsys, "info", "--model", hf_directory(tmp_path, header=header),
                          match=match)


def test_safetensors_float_tensor_of_integer_dtype(capsys, tmp_path):
    header = {"model.embed_tokens.weight": {"dtype": "I8", "shape": [256, 128],
                                            "data_offsets": [0, 256 * 128]}}
    directory = hf_directory(tmp_path, header=header)
    raw = json.dumps(header).encode()
    (directory / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw
                                                  + bytes(256 * 128))
    assert_one_line_error(capsys, "info", "--model", directory,
                          match="model.embed_tokens.weight has dtype I8, expected a float")


def test_directory_where_a_file_belongs(capsys, tmp_path):
    directory = hf_directory(tmp_path)
    (directory / "model.safetensors").mkdir()
    assert_one_line_error(capsys, "info", "--model", directory,
                          match="model.safetensors: is not a file")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").mkdir()
    assert_one_line_error(capsys, "info", "--model", tmp_path / "x", match="needs config.json")


# 4. Numbers too large for their type ---------------------------------------------------

def test_numbers_too_large(capsys, tmp_path, model_file):
    assert_one_line_error(capsys, "eval", "--model", model_file, "--tokens", f"1,{2 ** 70}",
                          match=f"token id {2 ** 70} is out of range")
    assert_one_line_error(capsys, "eval", "--model", model_file, "--tokens", f"{-2 ** 70}",
                          match="is out of range")
    fields = json.loads(ACCELERATOR_PRESETS["tiny"].to_json())
    for key in ("memory_words", "max_payload"):
        config = tmp_path / f"{key}.json"
        config.write_text(json.dumps({**fields, key: 2 ** 70}))
        assert_one_line_error(capsys, "generate", "--config", config, "-o", tmp_path / "out",
                              match=key)


# 5. --window beyond the context --------------------------------------------------------

@pytest.mark.parametrize("backend", ["golden", "reference"])
def test_window_beyond_the_context(capsys, tmp_path, model_file, backend):
    text = tmp_path / "t.txt"
    text.write_text("x" * 200)
    assert_one_line_error(capsys, "eval", "--model", model_file, "--text", text,
                          "--backend", backend, "--window", 49,
                          match="--window 49 is beyond the context of 48 tokens")
    assert main(["eval", "--model", str(model_file), "--text", str(text), "--backend",
                 backend, "--window", "48", "--json"]) == 0
    capsys.readouterr()


# 6. The sim backend without a C++ compiler or make --------------------------------------

def test_sim_without_a_compiler(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))          # an empty directory: nothing found
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(sim_transport, "simulation_is_built", lambda config, variant=None: False)

    def refuse(*args, **kwargs):
        raise AssertionError("the simulator build started")
    monkeypatch.setattr(sim_transport.SimTransport, "__init__", refuse)
    line = assert_one_line_error(capsys, "run", "--model", "tiny", "--prompt", "x", "-n", 1,
                                 "--backend", "sim",
                                 match="a C++ compiler (c++, g++ or clang++) and make are not")
    assert "building the simulator" not in line
    monkeypatch.setenv("CXX", "no-such-compiler -O2")
    with pytest.raises(TritiumError, match="CXX='no-such-compiler -O2'"):
        transports.open_transport("sim", ACCELERATOR_PRESETS["tiny"])


# 7. stdout that cannot be written ------------------------------------------------------

def test_stdout_full_disk():
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "tritium.cli", "info", "--model",
                               "tiny"], stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert lines == ["tritium: error: cannot write to stdout: No space left on device"]


class ClosedPipe:
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_stdout_closed_pipe(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["boards"]) == 2
    assert capsys.readouterr().err == "tritium: error: cannot write to stdout: Broken pipe\n"


# 8. Output paths ------------------------------------------------------------------------

def test_logits_paths(capsys, tmp_path, model_file):
    assert_one_line_error(capsys, "eval", "--model", model_file, "--tokens", "1,2",
                          "--logits", tmp_path, match="is a directory")
    out = tmp_path / "out"
    assert main(["eval", "--model", str(model_file), "--tokens", "1,2", "--logits",
                 str(out)]) == 0
    assert f"written to {out}" in capsys.readouterr().out
    assert out.is_file() and not (tmp_path / "out.npy").exists()
    assert np.load(out).shape == (2, 256)


# 9. --config on a host backend ---------------------------------------------------------

@pytest.mark.parametrize("backend", ["golden", "reference"])
def test_config_on_a_host_backend(capsys, model_file, backend):
    assert_one_line_error(capsys, "run", "--model", model_file, "--prompt", "x",
                          "--backend", backend, "--config", "tiny",
                          match="--config tiny applies only to device backends")


def test_head_format_on_a_host_backend(capsys, model_file):
    assert_one_line_error(capsys, "run", "--model", model_file, "--prompt", "x",
                          "--backend", "golden", "--head-format", "int4",
                          match="--head-format int4 applies only to device backends")


def test_a_head_format_the_config_cannot_take(capsys, tmp_path):
    """tiny with int8 groups of 48 is a valid config (the int8 head has no groups); its
    int4 head is not: 48 does not divide the hidden size of 128."""
    config = dataclasses.replace(ACCELERATOR_PRESETS["tiny"], head_group=48)
    path = tmp_path / "config.json"
    path.write_text(config.to_json())
    assert_one_line_error(capsys, "generate", "--config", str(path), "--head-format", "int4",
                          "-o", str(tmp_path / "out"),
                          match="--head-format int4: an int4 LM head's group (48) must "
                                "divide the hidden size (128)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fields, match", [
    ({"weight_queue": 100}, "weight_queue must be 0 or a power of two of at least 128 words, "
                            "not 100"),
    ({"weight_queue": 128, "weight_port_words": 1, "memory_ports": 1, "kv_reads": "units"},
     r"weight_queue reads the weights ahead through the weight port: it needs one"),
    ({"fetch_block": 3}, "fetch_block must be a power of two from 1 to 64 instructions, not 3"),
    ({"vector_lanes": 3}, "vector_lanes must be a positive divisor of the TLMM engine's "
                          f"{ACCELERATOR_PRESETS['kv260'].tlmm.rows} rows, not 3"),
    ({"vector_lanes": 0}, "vector_lanes must be a positive divisor"),
])
def test_a_config_file_with_a_bad_unit_size(capsys, tmp_path, fields, match):
    """Refused by name before anything is built: the estimate and generate read the same
    config file."""
    config = json.loads(ACCELERATOR_PRESETS["kv260"].to_json()) | fields
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    for command in (["estimate", "--model", "bitnet-b1.58-large", "--board", "kv260"],
                    ["generate", "--board", "kv260", "-o", str(tmp_path / "out")]):
        assert_one_line_error(capsys, *command, "--config", str(path), match=match)
    assert not (tmp_path / "out").exists()


def test_demo_on_a_host_backend_needs_no_config(capsys):
    assert main(["demo", "--backend", "golden", "-n", "2"]) == 0
    capsys.readouterr()


# 10. Limits checked before any transport opens ------------------------------------------

@pytest.mark.parametrize("backend", ["sim", "model"])
def test_prompt_too_long_before_the_device(capsys, no_device, backend):
    context = MODEL_PRESETS["tiny"].max_context
    assert_one_line_error(capsys, "run", "--model", "tiny", "--prompt", "x" * context,
                          "-n", 2, "--backend", backend,
                          match=f"exceeds the context of {context} tokens")


# 11. A GGUF whose header claims absurd lengths ------------------------------------------

def write_gguf(path):
    writer = GGUFWriter(str(path), "bitnet")
    writer.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
    writer.add_array("tokenizer.ggml.token_type", [1, 2, 3])
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize("key, item_type", [("tokenizer.ggml.tokens", 8),
                                            ("tokenizer.ggml.token_type", 5)])
def test_gguf_absurd_array_length(capsys, tmp_path, key, item_type):
    path = tmp_path / "corrupt.gguf"
    write_gguf(path)
    data = bytearray(path.read_bytes())
    field = key.encode() + struct.pack("<IIQ", 9, item_type, 3)
    at = data.index(field) + len(field) - 8
    data[at:at + 8] = struct.pack("<Q", 2 ** 40)
    path.write_bytes(bytes(data))
    for command in (["info"], ["estimate", "--board", "kv260"]):
        assert_one_line_error(capsys, command[0], "--model", path, *command[1:],
                              match="corrupt GGUF header: key")
    line = assert_one_line_error(capsys, "info", "--model", path, match="1,099,511,627,776")
    assert "more than the file holds" in line


def test_gguf_absurd_counts(capsys, tmp_path):
    path = tmp_path / "counts.gguf"
    write_gguf(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack("<Q", 2 ** 60)                # the key-value count
    path.write_bytes(bytes(data))
    assert_one_line_error(capsys, "info", "--model", path, match="more than the file holds")


def test_a_board_simulation_with_more_ports_than_its_memory():
    """Refused before the simulator is built: the memory model has four HP ports."""
    from tritium.hw.memory_model import MEMORY_MODELS
    five = dataclasses.replace(ACCELERATOR_PRESETS["kv260"], memory_ports=5,
                               weight_port_words=1, kv_reads="units", weight_queue=0)
    with pytest.raises(TritiumError, match="reads through 5 memory ports; memory model "
                                           "'kv260' has 4"):
        sim_transport.BoardSimTransport(five, MEMORY_MODELS["kv260"])
