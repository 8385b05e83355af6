# amaranth: UnusedElaboratable=no
"""``tritium generate`` and the determinism of the generated Verilog."""

import json

from tritium.cli import main
from tritium.hw.config import AcceleratorConfig, ModelConfig, TLMMConfig
from tritium.hw.top import Top
from tritium.hw.verilog import generate_verilog

SMALL = AcceleratorConfig(
    name="small", model=ModelConfig(name="small", vocab_size=16, hidden=32, layers=1, heads=2,
                                    kv_heads=1, head_dim=16, ffn=48, max_context=16),
    tlmm=TLMMConfig(group=3, tables=4, rows=4, tokens=4, max_k=48, max_n=48, acc_width=16),
    attention_lanes=2, memory_words=1024, max_payload=256)


def test_generate_writes_verilog_and_config_deterministically(tmp_path, capsys):
    """The CLI writes the Verilog and the config; a second generation of the same config
    is byte-identical."""
    config_file = tmp_path / "small.json"
    config_file.write_text(SMALL.to_json())
    assert main(["generate", "--config", str(config_file), "-o", str(tmp_path / "out"),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["design_id"] == f"{SMALL.design_id:08x}"
    verilog = (tmp_path / "out" / "tritium_small.v").read_text()
    assert verilog.count("module ") > 10
    assert generate_verilog(Top(SMALL), "tritium_small") == verilog
    written = AcceleratorConfig.from_json((tmp_path / "out" / "config.json").read_text())
    assert written == SMALL


def test_generate_and_run_refuse_bad_configs(tmp_path, capsys):
    def error(*argv):
        assert main(list(argv)) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tritium: error: ")
        return lines[0]

    assert "unknown accelerator config 'nope'" in error("generate", "--config", "nope",
                                                        "-o", str(tmp_path))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"name": "x"}))
    assert "not an accelerator config" in error("generate", "--config", str(broken),
                                                "-o", str(tmp_path))
    assert "cannot read" in error("generate", "--config", str(tmp_path / "missing.json"),
                                  "-o", str(tmp_path))
    assert "unknown transport 'nosuch'" in error("run", "--model", "tiny", "--prompt", "x",
                                                 "--backend", "nosuch", "-n", "1")


def test_run_on_the_device_model_reports_cycles_and_golden_match(tmp_path, capsys):
    """``--backend model``: the compiled program on the software device, over the link."""
    assert main(["run", "--model", "tiny", "--prompt", "Once", "-n", "3", "--backend", "model",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["matches_golden"] is True and len(result["tokens"]) == 3
    assert result["backend"] == "model" and result["clock_hz"] == 50_000_000
    assert {"prefill_cycles", "decode_cycles", "text"} <= set(result)
