"""Lattice ECP5 pieces shared by ECP5 boards: the PLL, device sizes, the block-RAM
estimate made before synthesis, and reading nextpnr-ecp5's report.

Vendor primitives live in ``boards/``, never in ``hw/``: the gateware stays portable
and simulates without vendor models.
"""

import dataclasses
import json
import math
import re
from pathlib import Path

from amaranth import Instance, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tritium.hw.errors import InputError

__all__ = ["Device", "DEVICES", "PLLParameters", "pll_parameters", "ECP5PLL", "GlobalBuffer",
           "MemoryUse", "memories_from_rtlil", "ebr_for_memory", "ebr_estimate", "check_fit",
           "read_nextpnr_report"]


@dataclasses.dataclass(frozen=True)
class Device:
    """What an ECP5 device offers, as nextpnr-ecp5 counts it (its ``--report``)."""
    name: str
    luts: int           # TRELLIS_COMB: LUT4s (a carry cell is two)
    ffs: int            # TRELLIS_FF
    ebr: int            # DP16KD: 18 Kbit block RAMs
    dsp: int            # MULT18X18D

    def limits(self) -> dict:
        return {"luts": self.luts, "ffs": self.ffs, "ebr": self.ebr, "dsp": self.dsp}


# Lattice's ECP5 family data sheet (FPGA-DS-02012), table 1.1.
DEVICES = {
    "LFE5U-85F": Device("LFE5U-85F", luts=83_640, ffs=83_640, ebr=208, dsp=156),
}

# What each resource is called in messages.
RESOURCE_NAMES = {"luts": "LUT4", "ffs": "flip-flops", "ebr": "EBR (DP16KD block RAMs)",
                  "dsp": "MULT18X18D multipliers"}


# ---------------------------------------------------------------------------------------
# PLL

# EHXPLLL limits in MHz (ECP5 sysCLOCK guide, TN1263; the same numbers as Trellis' ecppll).
PLL_INPUT = (8.0, 400.0)
PLL_OUTPUT = (10.0, 400.0)
PLL_PFD = (3.125, 400.0)
PLL_VCO = (400.0, 800.0)


@dataclasses.dataclass(frozen=True)
class PLLParameters:
    """EHXPLLL dividers with CLKOP fed back: f_out = f_in * clkfb_div / clki_div and
    f_vco = f_out * clkop_div."""
    input_hz: int
    clki_div: int
    clkfb_div: int
    clkop_div: int

    @property
    def output_hz(self) -> float:
        return self.input_hz * self.clkfb_div / self.clki_div

    @property
    def vco_hz(self) -> float:
        return self.output_hz * self.clkop_div

    @property
    def clkop_cphase(self) -> int:
        # Zero phase on CLKOP, as ecppll writes it: half the output divider, rounded down.
        return (self.clkop_div - 1) // 2


def pll_parameters(input_hz: int, output_hz: int) -> PLLParameters:
    """The EHXPLLL dividers that make exactly ``output_hz`` from ``input_hz``.

    Among exact solutions the one with the highest phase-detector frequency (smallest
    input divider) wins, then the VCO nearest the middle of its range: both lower jitter.
    Raises :class:`InputError` naming the nearest frequency when none is exact.
    """
    if not PLL_INPUT[0] * 1e6 <= input_hz <= PLL_INPUT[1] * 1e6:
        raise InputError(f"the ECP5 PLL takes {PLL_INPUT[0]:g} to {PLL_INPUT[1]:g} MHz in, "
                         f"not {input_hz / 1e6:g} MHz")
    lo, hi = (f * 1e6 for f in PLL_OUTPUT)
    if not lo <= output_hz <= hi:
        raise InputError(f"the ECP5 PLL makes {PLL_OUTPUT[0]:g} to {PLL_OUTPUT[1]:g} MHz, "
                         f"not {output_hz / 1e6:g} MHz")
    best, nearest = None, None
    for clki_div in range(1, 129):
        pfd = input_hz / clki_div / 1e6
        if not PLL_PFD[0] <= pfd <= PLL_PFD[1]:
            continue
        for clkfb_div in range(1, 81):
            out = input_hz * clkfb_div / clki_div
            if not lo <= out <= hi:
                continue
            # The output divider that puts the VCO nearest 600 MHz, if any lands in range.
            dividers = [d for d in range(1, 129)
                        if PLL_VCO[0] <= out * d / 1e6 <= PLL_VCO[1]]
            if not dividers:
                continue
            clkop_div = min(dividers, key=lambda d: abs(out * d / 1e6 - 600))
            candidate = PLLParameters(input_hz, clki_div, clkfb_div, clkop_div)
            if nearest is None or abs(out - output_hz) < abs(nearest.output_hz - output_hz):
                nearest = candidate
            if input_hz * clkfb_div == output_hz * clki_div and best is None:
                best = candidate
    if best is None:
        raise InputError(f"the ECP5 PLL cannot make exactly {output_hz / 1e6:g} MHz from "
                         f"{input_hz / 1e6:g} MHz (nearest: {nearest.output_hz / 1e6:g} MHz); "
                         f"choose a clock_hz it can make")
    return best


class ECP5PLL(wiring.Component):
    """One EHXPLLL: ``clk_out`` at the frequency of ``parameters``, from ``clk_in``.

    ``locked`` is asynchronous to both clocks: feed it to a reset synchroniser.

    Members
    -------
    clk_in : ``In(1)``
    clk_out : ``Out(1)``
    locked : ``Out(1)``
    """

    clk_in: In(1)
    clk_out: Out(1)
    locked: Out(1)

    def __init__(self, parameters: PLLParameters):
        self._parameters = parameters
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        p = self._parameters
        m.submodules.pll = Instance(
            "EHXPLLL",
            # nextpnr reads the frequencies for timing analysis and the loop-filter
            # settings for the bitstream from these attributes (values as ecppll writes).
            a_FREQUENCY_PIN_CLKI=f"{p.input_hz / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{p.output_hz / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
            p_CLKI_DIV=p.clki_div, p_CLKFB_DIV=p.clkfb_div, p_CLKOP_DIV=p.clkop_div,
            p_CLKOP_CPHASE=p.clkop_cphase, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            i_CLKI=self.clk_in, i_CLKFB=self.clk_out, o_CLKOP=self.clk_out,
            o_LOCK=self.locked, i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0,
            i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0)
        return m


class GlobalBuffer(wiring.Component):
    """One DCCA: ``o`` is ``i`` carried on one of the device's global networks.

    nextpnr-ecp5 puts only clocks on the global networks by itself. A synchronous reset
    reaches every flip-flop that has one (35,300 of the ULX3S design's 38,700); in the
    general routing it was the most congested net at nextpnr's first routing pass
    (docs/boards.md). On a global network it takes no general routing: the networks
    reach every slice's reset input, and LUT inputs too. The clock enables of the
    widest fan-out go the same way after synthesis (:mod:`tritium.boards.globals`).

    Members
    -------
    i : ``In(1)``
    o : ``Out(1)``
    """

    i: In(1)
    o: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dcca = Instance("DCCA", i_CLKI=self.i, i_CE=1, o_CLKO=self.o)
        return m


# ---------------------------------------------------------------------------------------
# Block RAM before synthesis

# How Yosys' memory_libmap (in synth_ecp5) places a memory, from the cost model of its
# source and yosys/share/lattice/{brams_16kd,lutrams_trellis}.txt: every candidate
# costs 128 per DP16KD or 4 per TRELLIS_DPR16X4 (16 x 4 LUT RAM, asynchronous read),
# times the copies needed for the read ports, plus half a unit per bit of the read-data
# multiplexer and per write-enable of the demultiplexer when the depth is split; soft
# logic costs 1 per bit of RAM and 1/16 per bit of ROM. The cheapest wins, soft logic
# on a tie. DP16KD ports are up to 18 bits wide (two ports: one writes, one reads, or
# both read a ROM); the pseudo-dual-port PDPW16KD writes 36 bits and reads through one
# port. Checked against Yosys 0.70 on single memories and on the whole tiny-shaped top.
_DP16KD_MODES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18))
_PDPW16KD_MODES = ((512, 36),)
_BLOCK_COST, _LUTRAM_COST = 128, 4
_MUX_FACTOR = 0.5
_LOGIC_COST_RAM, _LOGIC_COST_ROM = 1.0, 1.0 / 16


@dataclasses.dataclass(frozen=True)
class MemoryUse:
    name: str
    width: int
    depth: int
    read_ports: int
    write_ports: int
    async_read: bool
    ram_style: str = None       # the memory's ``ram_style`` attribute, if it has one


def memories_from_rtlil(rtlil_text: str) -> list:
    """Every memory of an RTLIL netlist, as Yosys' ``opt_mem`` leaves them before
    mapping: a ROM loses the bit columns that are constant."""
    found = []
    for module in re.split(r"^module ", rtlil_text, flags=re.M)[1:]:
        module_name = module.split(None, 1)[0]
        sizes, styles = {}, {}
        for attributes, width, size, name in re.findall(
                r"((?:^\s*attribute .*\n)*)^\s*memory width (\d+) size (\d+) (\S+)", module,
                flags=re.M):
            sizes[name] = (int(width), int(size))
            style = re.search(r'attribute \\ram_style "(\w+)"', attributes)
            styles[name] = style.group(1) if style else None
        ports = {name: {"reads": 0, "writes": 0, "async": False, "data": ""} for name in sizes}
        for kind, body in re.findall(r"^\s*cell \$(memrd_v2|memwr_v2|meminit_v2) \S+\n(.*?)^\s*end",
                                     module, flags=re.M | re.S):
            memid = "\\" + re.search(r'parameter \\MEMID "\\\\(\S+)"', body).group(1)
            port = ports.get(memid)
            if port is None:
                continue
            if kind == "memrd_v2":
                port["reads"] += 1
                port["async"] |= bool(re.search(r"parameter \\CLK_ENABLE (0|1'0)\b", body))
            elif kind == "memwr_v2":
                port["writes"] += 1
            else:
                data = re.search(r"connect \\DATA \d+'([01xz]+)", body)
                port["data"] += data.group(1) if data else ""
        for name, (width, depth) in sizes.items():
            port = ports[name]
            if port["writes"] == 0 and port["data"]:
                width = _varying_columns(port["data"], width)
            found.append(MemoryUse(f"{module_name}.{name}".replace("\\", ""), width, depth,
                                   port["reads"], port["writes"], port["async"],
                                   styles[name]))
    return found


def _varying_columns(bits: str, width: int) -> int:
    """Bit columns of a ROM that are not the same in every word (RTLIL constants are
    written most significant bit first, so word 0 is at the end)."""
    words = [bits[len(bits) - (i + 1) * width:len(bits) - i * width]
             for i in range(len(bits) // width)]
    return sum(1 for column in range(width) if len({word[column] for word in words}) > 1)


def _block_candidates(memory: MemoryUse):
    """(cost, DP16KDs) of each block-RAM geometry Yosys could use for ``memory``."""
    w, d, reads, writes = memory.width, memory.depth, memory.read_ports, memory.write_ports
    if memory.async_read or writes > 1 or reads == 0:
        return
    for modes, ports_per_copy in ((_DP16KD_MODES, 2 - writes), (_PDPW16KD_MODES, 1)):
        copies = math.ceil(reads / ports_per_copy)
        for depth, width in modes:
            slices = math.ceil(d / depth)
            # Yosys pads a word to whole write-enable bytes (9 bits, or the block's
            # width if narrower) and packs the slices' padded words side by side, so a
            # block's spare columns serve the next slice.
            byte = min(9, width) if writes else 1
            padded = math.ceil(w / byte) * byte
            blocks = math.ceil(slices * padded / width) * copies
            mux = (slices - 1) * w * reads + (slices * writes if slices > 1 else 0)
            yield _BLOCK_COST * blocks + _MUX_FACTOR * mux, blocks


# ``ram_style`` values that keep Yosys' memory_libmap off block RAM.
_NOT_BLOCK_RAM = ("distributed", "lutram", "logic", "registers")


def ebr_for_memory(memory: MemoryUse) -> int:
    """DP16KDs Yosys' ``synth_ecp5`` maps ``memory`` to (0 for LUT RAM or soft logic)."""
    w, d, reads, writes = memory.width, memory.depth, memory.read_ports, memory.write_ports
    if reads == 0 or memory.ram_style in _NOT_BLOCK_RAM:
        return 0
    bits = w * d
    best_cost = bits * (_LOGIC_COST_ROM if writes == 0 else _LOGIC_COST_RAM)
    best_blocks = 0
    candidates = list(_block_candidates(memory))
    if writes == 1:                               # LUT RAM is never used for a ROM
        slices = math.ceil(d / 16)
        cells = math.ceil(w / 4) * slices * reads
        mux = (slices - 1) * w * reads + (slices if slices > 1 else 0)
        candidates.append((_LUTRAM_COST * cells + _MUX_FACTOR * mux, 0))
    for cost, blocks in candidates:
        if cost < best_cost:
            best_cost, best_blocks = cost, blocks
    return best_blocks


def ebr_estimate(rtlil_text: str) -> dict:
    """Block RAM of a netlist before synthesis: the total and every memory that uses some."""
    uses = [(ebr_for_memory(memory), memory) for memory in memories_from_rtlil(rtlil_text)]
    uses = sorted((use for use in uses if use[0]), key=lambda use: -use[0])
    return {"ebr": sum(count for count, _ in uses),
            "memories": [{"name": memory.name, "width": memory.width, "depth": memory.depth,
                          "read_ports": memory.read_ports, "ebr": count}
                         for count, memory in uses]}


def check_fit(device: Device, needs: dict, what: str) -> None:
    """Raise :class:`InputError` naming the first resource of ``needs`` that ``device``
    lacks and by how much: "needs 240 EBR, the LFE5U-85F has 208 (32 short)"."""
    for key, limit in device.limits().items():
        need = needs.get(key)
        if need is not None and need > limit:
            raise InputError(f"{what} does not fit the {device.name}: it needs {need} "
                             f"{RESOURCE_NAMES[key]}, the {device.name} has {limit} "
                             f"({need - limit} short)")


# ---------------------------------------------------------------------------------------
# nextpnr's report

# nextpnr's cell types -> our resource names.
_NEXTPNR_CELLS = {"TRELLIS_COMB": "luts", "TRELLIS_FF": "ffs", "DP16KD": "ebr",
                  "MULT18X18D": "dsp", "TRELLIS_IO": "io", "EHXPLLL": "pll",
                  "TRELLIS_RAMW": "lutram_ramw"}


def read_nextpnr_report(path) -> dict:
    """Utilisation and Fmax from ``nextpnr-ecp5 --report FILE`` (JSON).

    Returns ``{"utilisation": {resource: {"used", "available"}}, "fmax": {clock:
    {"achieved_mhz", "target_mhz", "met"}}}``; resources are named as in
    :data:`RESOURCE_NAMES` where they have a name there, else by nextpnr's cell type.
    """
    report = json.loads(Path(path).read_text())
    utilisation = {}
    for cell, use in report.get("utilization", {}).items():
        utilisation[_NEXTPNR_CELLS.get(cell, cell)] = {"used": use["used"],
                                                       "available": use["available"]}
    fmax = {}
    for clock, figures in report.get("fmax", {}).items():
        achieved, target = figures["achieved"], figures["constraint"]
        fmax[clock] = {"achieved_mhz": round(achieved, 2), "target_mhz": round(target, 2),
                       "met": achieved >= target}
    return {"utilisation": utilisation, "fmax": fmax}
