"""AMD Kria KV260 (Zynq UltraScale+ XCK26): platform, board top, Vivado flow, estimate.

The KV260's fabric has no clock of its own: ``pl_clk0`` and the reset come from the
processing system (PS). The board top is therefore a module of the Vivado block
design (a module reference) rather than a whole bitstream's top:

- ``m_axi`` (and ``m_axi1`` .. ``m_axi3`` for a design with ``memory_ports`` > 1): the
  accelerator's memory port as AXI4 masters (:class:`~tritium.hw.memory.AXI4Master`),
  offset by a base address and widened to 49 bits, for the PS's ``S_AXI_HP0_FPD`` ..
  ``S_AXI_HP3_FPD`` ports: the model lives in PS DDR. With several, the port is striped
  across them, one burst per chunk, and so is the TLMM's own weight port if the design
  has one (:class:`~tritium.hw.memory.fabric.BoardPorts`);
- ``s_axi_lite``: the register window of :mod:`tritium.hw.link.window_map` on the PS's
  ``M_AXI_HPM0_LPD`` port: the host link's SLIP frames as a byte FIFO in each
  direction, and the base address of the DDR buffer;
- ``aclk``/``aresetn``: ``pl_clk0`` and a ``proc_sys_reset``'s ``peripheral_aresetn``.

:func:`generate` writes that module's Verilog, the XDC of the fan pin, a Vivado Tcl
script that builds the block design around it and runs it through to a bitstream and
an ``.xsa`` hardware handoff, and a resource estimate from Yosys checked against the
XCK26 (docs/boards.md, "KV260").
"""

import json
import shutil
import subprocess
import time
from pathlib import Path

from amaranth import Cat, ClockDomain, Module
from amaranth.build import Attrs, PinsN, Resource
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.vendor import XilinxPlatform

from tritium.hw.config import AcceleratorConfig
from tritium.hw.errors import InputError, TritiumError
from tritium.hw.link import window_map
from tritium.hw.memory.axi import AXI4Master, AXI4Signature
from tritium.hw.memory.fabric import BoardPorts
from tritium.hw.memory_model import MEMORY_MODELS
from tritium.hw.top import Top

from .zynq import (AXI4AddressOffset, AXI4LiteSignature, AXI4LiteTarget, LinkWindow,
                   annotate_axi, annotate_clock, annotate_reset, check_fifo_depth)

__all__ = ["summary_lines", "KV260Platform", "KV260Top", "XCK26", "generate", "check_fit", "vivado_script",
           "toplevel_name", "LITE_ADDR_WIDTH", "MAX_BUFFER_BYTES", "LINK_WINDOW_ADDRESS"]

#: XCK26 resources (DS987; the denominators of a KV260 Vivado report).
XCK26 = {"luts": 117_120, "ffs": 234_240, "bram": 144, "uram": 64, "dsp": 1_248}
_RESOURCE_NAMES = {"luts": "LUTs", "ffs": "flip-flops", "bram": "BRAM36", "uram": "URAM",
                   "dsp": "DSP48E2"}

LITE_ADDR_WIDTH = 12                     # the 4 KiB register window
#: Where the block design maps the window on M_AXI_HPM0_LPD (the LPD master's range
#: starts here).
LINK_WINDOW_ADDRESS = 0x8000_0000
#: PS DDR on the KV260 is 4 GiB in two 2 GiB regions (0x0 and 0x8_0000_0000) that are
#: not adjacent, so one contiguous buffer holds at most 2 GiB.
MAX_BUFFER_BYTES = 2 ** 31
#: The KV260's memory as measured (tritium.hw.memory_model): the HP ports, HP0 first.
HP_PORTS = MEMORY_MODELS["kv260"].ports
HP0 = HP_PORTS[0]
# HP0's data width on the PS side; SmartConnect converts the master's width to it.
HP_DATA_WIDTH = 8 * HP0.bus_bytes


def axi_names(config) -> list:
    """The board top's AXI4 master interfaces, one per HP port the design uses:
    ``m_axi`` (HP0), then ``m_axi1`` .. ``m_axi3``."""
    return ["m_axi"] + [f"m_axi{index}" for index in range(1, config.memory_ports)]


def _too_many_ports(config) -> str:
    """Why the KV260 cannot give ``config`` its memory ports, or ``""``."""
    if config.memory_ports <= len(HP_PORTS):
        return ""
    return (f"config {config.name!r} reads through {config.memory_ports} memory ports; "
            f"the KV260 has {len(HP_PORTS)} HP ports")


def master_burst(config) -> int:
    """The AXI master's longest burst, in the design's bus words: an HP port takes bursts
    of at most ``HP0.max_burst`` beats of its own width into the PS (the memory model)."""
    return MEMORY_MODELS["kv260"].burst_words(0, config.memory.bytes_per_word)
FIFO_DEPTH = 512


class KV260Platform(XilinxPlatform):
    """The K26 SOM on the KV260 carrier, for naming and the Vivado flow.

    The programmable logic's clocks and resets come from the PS (``pl_clk0``,
    ``pl_resetn0``), so there is no default clock. The only PL pin the board top's
    block design uses is the fan enable (active low, ``HDA20``), driven by the PS's
    TTC0 as in AMD's KV260 base design, so Linux controls the fan.
    """
    device = "xck26"
    package = "sfvc784"
    speed = "2LV-c"
    default_clk = None
    resources = [
        Resource("fan", 0, PinsN("A12", dir="o"),
                 Attrs(IOSTANDARD="LVCMOS33", SLEW="SLOW", DRIVE="4")),
    ]
    connectors = []

    #: Attributes for the design's large RAMs (``hw.weights.ram_attributes``): the TLMM
    #: chunk buffer (2,560 bits x 512 at the kv260 preset) in block RAM, 36 BRAM36
    #: rather than 18 of the 64 URAM288, which the scratchpad, the accumulators and the
    #: codes buffer fill at BitNet-2B-4T's sizes (the kv260 presets keep RoPE's table in
    #: DDR, so block RAM has room; with the table's ROM it had not, and the buffer was
    #: in UltraRAM). The weight queue (512 bits x 4,096 at the kv260 preset) in
    #: UltraRAM: 8 URAM288 where block RAM would take 58. The gating unit's sigmoid
    #: tables (one 512 x 27-bit ROM per lane) stay in block RAM (4 BRAM36): in LUTs
    #: (``ram_style = "logic"``), as while RoPE's ROM filled the block RAM, they took
    #: about 1,600 LUTs, which the engine of 16 rows needs more.
    ram_attrs = {"tlmm_chunks": {"ram_style": "block"}, "weight_queue": {"ram_style": "ultra"}}

    #: The Vivado board part's name pattern (its version depends on the Vivado release).
    board_part_pattern = "*:kv260_som:*"
    carrier_connection = "som240_1_connector xilinx.com:kv260_carrier:som240_1_connector:1.3"

    @property
    def part(self) -> str:
        """The Vivado part name, ``xck26-sfvc784-2LV-c``."""
        return f"{self.device}-{self.package}-{self.speed}"


def toplevel_name(config: AcceleratorConfig) -> str:
    """The board top's Verilog module name for ``config`` (``tritium_kv260_<name>``)."""
    return "tritium_kv260_" + "".join(c if c.isalnum() else "_" for c in config.name)


class KV260Top(wiring.Component):
    """The accelerator as a module of the KV260's block design (see the module docstring).

    ``Top(config, onchip=False)``'s memory port (and weight port, if it has one) goes
    through :class:`BoardPorts` to an :class:`AXI4Master` and an
    :class:`AXI4AddressOffset` per port (``m_axi``, ``m_axi1``, ...: :func:`axi_names`,
    ``config.memory_ports`` of them); its link bytes through a
    :class:`LinkWindow` behind an :class:`AXI4LiteTarget` on ``s_axi_lite``. All of it
    runs in one clock domain on ``aclk``, reset while ``aresetn`` is low.

    Raises ``ValueError`` when the config's bus word is not a power-of-two number of
    bytes (AXI4 needs one) or it asks for more memory ports than the four HP ports.

    Members
    -------
    aclk : ``In(1)``; aresetn : ``In(1)``
    m_axi, m_axi1, ... : ``Out(AXI4Signature(49, config.data_width, 1))`` each
    s_axi_lite : ``In(AXI4LiteSignature(12))``
    """

    def __init__(self, config: AcceleratorConfig, *, fifo_depth: int = FIFO_DEPTH):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        check_fifo_depth(fifo_depth)
        if problem := _too_many_ports(config):
            raise ValueError(problem)
        self._config = config
        self._fifo_depth = fifo_depth
        masters = axi_names(config)
        super().__init__({
            "aclk": In(1),
            "aresetn": In(1),
            **{name: Out(AXI4Signature(window_map.BASE_ADDRESS_BITS, config.data_width, 1))
               for name in masters},
            "s_axi_lite": In(AXI4LiteSignature(LITE_ADDR_WIDTH)),
        })
        for name in masters:
            annotate_axi(getattr(self, name), name, "AXI4", "master")
        annotate_axi(self.s_axi_lite, "s_axi_lite", "AXI4LITE", "slave")
        annotate_clock(self.aclk, "aclk", (*masters, "s_axi_lite"), "aresetn")
        annotate_reset(self.aresetn, "aresetn")

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain()
        m.d.comb += [sync.clk.eq(self.aclk), sync.rst.eq(~self.aresetn)]
        config = self._config
        m.submodules.core = core = Top(config, onchip=False)
        m.submodules.target = target = AXI4LiteTarget(LITE_ADDR_WIDTH)
        m.submodules.window = window = LinkWindow(config.design_id, addr_width=LITE_ADDR_WIDTH,
                                                  fifo_depth=self._fifo_depth)
        m.submodules.ports = ports = BoardPorts(config, master_burst(config))
        wiring.connect(m, core.memory, ports.units)
        if config.weight_port:
            wiring.connect(m, core.weights, ports.weights)
        errors = []
        for index, (port, name) in enumerate(zip(ports.memory, axi_names(config))):
            master = AXI4Master(config.memory, max_burst=master_burst(config))
            offset = AXI4AddressOffset(master.signature.members["axi"].signature,
                                       window_map.BASE_ADDRESS_BITS)
            m.submodules[f"master{index}"], m.submodules[f"offset{index}"] = master, offset
            wiring.connect(m, port, master.port)
            wiring.connect(m, master.axi, offset.inner)
            wiring.connect(m, offset.outer, wiring.flipped(getattr(self, name)))
            m.d.comb += offset.base.eq(window.base)
            errors.append(master.error)
        wiring.connect(m, wiring.flipped(self.s_axi_lite), target.axi)
        wiring.connect(m, target.access, window.access)
        wiring.connect(m, window.to_device, core.rx)
        wiring.connect(m, core.tx, window.from_device)
        m.d.comb += window.memory_error.eq(Cat(*errors).any())
        return m


# -- Vivado ------------------------------------------------------------------------------

_XDC = """\
# Generated by tritium (boards/kv260.py): the KV260's fan enable (HDA20, active low),
# driven by the PS's TTC0 as in AMD's KV260 base design, so Linux controls the fan.
set_property PACKAGE_PIN A12 [get_ports {{fan_en_b}}]
set_property IOSTANDARD LVCMOS33 [get_ports {{fan_en_b}}]
set_property SLEW SLOW [get_ports {{fan_en_b}}]
set_property DRIVE 4 [get_ports {{fan_en_b}}]
set_property BITSTREAM.GENERAL.COMPRESS TRUE [current_design]
"""

# The block design: zynq_ultra_ps_e with the board preset; pl_clk0 clocks everything;
# M_AXI_HPM0_LPD -> SmartConnect (AXI4 -> AXI4-Lite) -> s_axi_lite at LINK_WINDOW_ADDRESS;
# m_axi -> SmartConnect (width conversion) -> S_AXI_HP0_FPD, which sees PS DDR only; a
# design on several HP ports has m_axi1 -> S_AXI_HP1_FPD and so on, a SmartConnect each.
_TCL = r"""# Generated by tritium (boards/kv260.py) for accelerator config {config_name!r},
# design id 0x{design_id:08x}. Builds the KV260 block design around the board top
# {top}.v, then synthesis, implementation, the bitstream and the .xsa hardware handoff.
#
#   vivado -mode batch -source {script} [-tclargs -jobs N]
#
# Outputs, next to this script: {project}.bit, {project}.hwh, {project}.xsa (PYNQ
# needs the .bit and .hwh side by side), reports/ and the Vivado project in vivado/.
# Needs Vivado with the Kria KV260 board files (XHub board store).

set here [file normalize [file dirname [info script]]]
set top {top}
set project {project}
set pl_clk_mhz {clock_mhz}
set jobs 4
for {{set i 0}} {{$i < $argc}} {{incr i}} {{
  if {{[lindex $argv $i] eq "-jobs"}} {{ incr i; set jobs [lindex $argv $i] }}
}}

proc tritium_fail {{message}} {{
  puts "ERROR: tritium: $message"
  exit 1
}}

# -- project -----------------------------------------------------------------------------
create_project $project $here/vivado -part {part} -force
set board [lindex [get_board_parts -quiet -latest_file_version {{{board_pattern}}}] 0]
if {{$board eq ""}} {{
  tritium_fail "the KV260 board files are missing (board part {board_pattern}):\
    install them from the XHub board store (Vivado: Tools > Vivado Store > Boards)"
}}
set_property board_part $board [current_project]
set carrier [lindex [get_board_parts -quiet -latest_file_version {{*:kv260_carrier:*}}] 0]
if {{$carrier ne ""}} {{
  set carrier_version [lindex [split $carrier :] end]
  set_property board_connections [list som240_1_connector \
    xilinx.com:kv260_carrier:som240_1_connector:$carrier_version] [current_project]
}}
add_files -norecurse $here/$top.v
add_files -fileset constrs_1 -norecurse $here/{xdc}
update_compile_order -fileset sources_1

# -- block design ------------------------------------------------------------------------
create_bd_design $project
set ps [create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e zynq_ultra_ps_e_0]
apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e \
  -config {{apply_board_preset "1"}} $ps
# M_AXI_GP2 = M_AXI_HPM0_LPD (the window); S_AXI_GP2 .. GP5 = S_AXI_HP0_FPD .. HP3_FPD
# (PS DDR): the masters' HP ports, in the order of this list.
set masters {{{masters}}}
set_property -dict [list \
  CONFIG.PSU__USE__M_AXI_GP0 {{0}} \
  CONFIG.PSU__USE__M_AXI_GP1 {{0}} \
  CONFIG.PSU__USE__M_AXI_GP2 {{1}} \
  CONFIG.PSU__FPGA_PL0_ENABLE {{1}} \
  CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ $pl_clk_mhz \
  CONFIG.PSU__TTC0__WAVEOUT__ENABLE {{1}} \
  CONFIG.PSU__TTC0__WAVEOUT__IO {{EMIO}} \
] $ps
for {{set hp 0}} {{$hp < [llength $masters]}} {{incr hp}} {{
  set gp [expr {{$hp + 2}}]
  set_property -dict [list CONFIG.PSU__USE__S_AXI_GP$gp {{1}} \
    CONFIG.PSU__SAXIGP${{gp}}__DATA_WIDTH {{{hp_width}}}] $ps
}}
set actual_mhz [get_property CONFIG.PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ $ps]
puts "tritium: pl_clk0 requested $pl_clk_mhz MHz, the PS makes $actual_mhz MHz"

set core [create_bd_cell -type module -reference $top tritium_0]
set reset [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset reset_pl_clk0]
set lite_sc [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect smartconnect_lite]
set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{1}}] $lite_sc
foreach master $masters {{
  set memory_sc [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect smartconnect_$master]
  set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{1}}] $memory_sc
}}
set fan [create_bd_cell -type ip -vlnv xilinx.com:ip:xlslice fan_slice]
set_property -dict [list CONFIG.DIN_WIDTH {{3}} CONFIG.DIN_FROM {{2}} CONFIG.DIN_TO {{2}} \
  CONFIG.DOUT_WIDTH {{1}}] $fan
create_bd_port -dir O -from 0 -to 0 fan_en_b

set clock [get_bd_pins zynq_ultra_ps_e_0/pl_clk0]
connect_bd_net $clock [get_bd_pins zynq_ultra_ps_e_0/maxihpm0_lpd_aclk] \
  [get_bd_pins tritium_0/aclk] \
  [get_bd_pins reset_pl_clk0/slowest_sync_clk] [get_bd_pins smartconnect_lite/aclk]
connect_bd_net [get_bd_pins zynq_ultra_ps_e_0/pl_resetn0] \
  [get_bd_pins reset_pl_clk0/ext_reset_in]
connect_bd_net [get_bd_pins reset_pl_clk0/peripheral_aresetn] [get_bd_pins tritium_0/aresetn]
connect_bd_net [get_bd_pins reset_pl_clk0/interconnect_aresetn] \
  [get_bd_pins smartconnect_lite/aresetn]
connect_bd_intf_net [get_bd_intf_pins zynq_ultra_ps_e_0/M_AXI_HPM0_LPD] \
  [get_bd_intf_pins smartconnect_lite/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins smartconnect_lite/M00_AXI] \
  [get_bd_intf_pins tritium_0/s_axi_lite]
for {{set hp 0}} {{$hp < [llength $masters]}} {{incr hp}} {{
  set master [lindex $masters $hp]
  connect_bd_net $clock [get_bd_pins zynq_ultra_ps_e_0/saxihp${{hp}}_fpd_aclk] \
    [get_bd_pins smartconnect_$master/aclk]
  connect_bd_net [get_bd_pins reset_pl_clk0/interconnect_aresetn] \
    [get_bd_pins smartconnect_$master/aresetn]
  connect_bd_intf_net [get_bd_intf_pins tritium_0/$master] \
    [get_bd_intf_pins smartconnect_$master/S00_AXI]
  connect_bd_intf_net [get_bd_intf_pins smartconnect_$master/M00_AXI] \
    [get_bd_intf_pins zynq_ultra_ps_e_0/S_AXI_HP${{hp}}_FPD]
}}
connect_bd_net [get_bd_pins zynq_ultra_ps_e_0/emio_ttc0_wave_o] [get_bd_pins fan_slice/Din]
connect_bd_net [get_bd_pins fan_slice/Dout] [get_bd_ports fan_en_b]

# The module reference must carry pl_clk0's real frequency, or validation fails.
set clock_hz [get_property CONFIG.FREQ_HZ $clock]
set_property CONFIG.FREQ_HZ $clock_hz [get_bd_pins tritium_0/aclk]
foreach interface [concat $masters s_axi_lite] {{
  set_property CONFIG.FREQ_HZ $clock_hz [get_bd_intf_pins tritium_0/$interface]
}}

# -- addresses ---------------------------------------------------------------------------
assign_bd_address
set window [get_bd_addr_segs -of_objects [get_bd_addr_spaces zynq_ultra_ps_e_0/Data] \
  -filter {{NAME =~ *tritium_0*}}]
if {{[llength $window] != 1}} {{
  tritium_fail "expected one address segment for the link window, found '$window'"
}}
set_property offset {window_address} $window
set_property range {window_range} $window
# The accelerator reaches PS DDR only (the buffer the host gives it lies there).
foreach master $masters {{
  foreach segment [get_bd_addr_segs -of_objects [get_bd_addr_spaces tritium_0/$master]] {{
    if {{![string match *DDR* [get_property NAME $segment]]}} {{ exclude_bd_addr_seg $segment }}
  }}
}}
validate_bd_design
save_bd_design
set design_file [get_files $project.bd]
generate_target all $design_file
add_files -norecurse [make_wrapper -files $design_file -top]
set_property top ${{project}}_wrapper [current_fileset]
update_compile_order -fileset sources_1

# -- synthesis, implementation, bitstream --------------------------------------------------
launch_runs synth_1 -jobs $jobs
wait_on_run synth_1
if {{[get_property PROGRESS [get_runs synth_1]] ne "100%"}} {{
  tritium_fail "synthesis failed: see [get_property DIRECTORY [get_runs synth_1]]/runme.log"
}}
launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
if {{[get_property PROGRESS [get_runs impl_1]] ne "100%"}} {{
  tritium_fail "implementation failed: see [get_property DIRECTORY [get_runs impl_1]]/runme.log"
}}
open_run impl_1
file mkdir $here/reports
report_utilization -file $here/reports/utilization.rpt
report_utilization -hierarchical -hierarchical_depth 4 \
  -file $here/reports/utilization_hierarchical.rpt
report_timing_summary -max_paths 20 -file $here/reports/timing.rpt
set setup_slack [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]
set hold_slack [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -hold]]
puts "tritium: worst setup slack $setup_slack ns, hold slack $hold_slack ns at $actual_mhz MHz"
if {{$setup_slack < 0 || $hold_slack < 0}} {{
  tritium_fail "timing is not met at $actual_mhz MHz (setup $setup_slack ns, hold\
    $hold_slack ns): see reports/timing.rpt; lower pl_clk_mhz at the top of this script"
}}

write_hw_platform -fixed -include_bit -force -file $here/$project.xsa
set bitstream [lindex [glob -nocomplain [get_property DIRECTORY [get_runs impl_1]]/*.bit] 0]
if {{$bitstream eq ""}} {{ tritium_fail "implementation wrote no bitstream" }}
file copy -force $bitstream $here/$project.bit
# The .hwh (PYNQ reads it beside the .bit) is in .gen (Vivado 2020.2 on) or .srcs.
set handoff [lindex [glob -nocomplain \
  $here/vivado/$project.gen/sources_1/bd/$project/hw_handoff/$project.hwh \
  $here/vivado/$project.srcs/sources_1/bd/$project/hw_handoff/$project.hwh] 0]
if {{$handoff ne ""}} {{ file copy -force $handoff $here/$project.hwh }}
puts "tritium: wrote $here/$project.bit and $here/$project.xsa"
"""

PROJECT = "tritium_kv260"
SCRIPT = "build_kv260.tcl"
XDC = "kv260.xdc"


def vivado_script(config: AcceleratorConfig) -> str:
    """The Vivado Tcl script that builds the KV260 design of ``config`` (see :data:`_TCL`)."""
    platform = KV260Platform()
    return _TCL.format(
        config_name=config.name, design_id=config.design_id, top=toplevel_name(config),
        script=SCRIPT, project=PROJECT, clock_mhz=f"{config.clock_hz / 1e6:g}",
        part=platform.part, board_pattern=KV260Platform.board_part_pattern,
        hp_width=HP_DATA_WIDTH, masters=" ".join(axi_names(config)), xdc=XDC,
        window_address=f"0x{LINK_WINDOW_ADDRESS:08X}",
        window_range=f"{window_map.WINDOW_BYTES // 1024}K")


# -- the estimate --------------------------------------------------------------------------

def check_fit(resources: dict, config_name: str = "the design", limits: dict = None) -> dict:
    """Compare a Yosys estimate (:func:`tritium.boards.synth.summarize`'s ``xcup`` keys)
    with the XCK26 and return, per resource, ``used``, ``available`` and ``percent``.

    LUTs count logic LUTs, LUTs used as distributed RAM and shift registers together,
    as the XCK26's 117,120 do. Raises :class:`InputError` naming every resource that
    does not fit and by how much.
    """
    limits = XCK26 if limits is None else limits
    used = {"luts": resources["luts"] + resources["lutram"] + resources["srl"],
            "ffs": resources["ffs"], "bram": resources["bram"], "uram": resources["uram"],
            "dsp": resources["dsp"]}
    over = [f"{_RESOURCE_NAMES[key]} {_count(used[key])} > {_count(limit)} "
            f"(short by {_count(used[key] - limit)})"
            for key, limit in limits.items() if used[key] > limit]
    if over:
        raise InputError(f"config {config_name!r} does not fit the KV260's XCK26 (yosys "
                         f"estimate): {'; '.join(over)}")
    return {key: {"used": used[key], "available": limit,
                  "percent": round(100 * used[key] / limit, 1)}
            for key, limit in limits.items()}


def _count(value):
    return f"{value:,g}" if isinstance(value, float) else f"{value:,}"


def _synthesize(config: AcceleratorConfig, workdir, timeout) -> dict:
    from .synth import SynthesisError, synthesize, yosys_version
    try:
        result = synthesize(KV260Top(config), "xcup", name=toplevel_name(config),
                            timeout=timeout, workdir=workdir, platform=KV260Platform())
        result["tool"] = yosys_version()
    except SynthesisError as error:
        raise TritiumError(str(error)) from None
    result["kind"] = "yosys estimate, out of context, before place and route"
    result["device"] = "XCK26 (xck26-sfvc784-2LV-c)"
    return result


def estimate(config: AcceleratorConfig, *, workdir=None, timeout: float = None) -> dict:
    """Synthesise the board top with Yosys for UltraScale+ (``synth_xilinx -family xcup``)
    and check it against the XCK26: the :func:`~tritium.boards.synth.synthesize` result
    plus ``fit`` (:func:`check_fit`). Raises :class:`InputError` if it does not fit and
    :class:`~tritium.hw.errors.TritiumError` if Yosys fails."""
    result = _synthesize(config, workdir, timeout)
    result["fit"] = check_fit(result["resources"], config.name)
    return result


# -- generate ------------------------------------------------------------------------------

def _check_config(config) -> None:
    if not isinstance(config, AcceleratorConfig):
        raise InputError(f"the KV260 needs an accelerator config, not {config!r}")
    word_bytes = config.memory.bytes_per_word
    if word_bytes & (word_bytes - 1) or word_bytes > 128:
        raise InputError(f"config {config.name!r} has {config.data_width}-bit bus words "
                         f"({config.lanes} lanes); the KV260's AXI master needs a "
                         f"power of two of bytes, at most 1024 bits")
    memory_bytes = config.memory_words * word_bytes
    if problem := _too_many_ports(config):
        raise InputError(problem)
    if memory_bytes > MAX_BUFFER_BYTES:
        raise InputError(f"config {config.name!r} needs a {memory_bytes:,}-byte memory "
                         f"buffer; the KV260's largest contiguous DDR region holds "
                         f"{MAX_BUFFER_BYTES:,}")


# What the report's ``estimate.fit`` keys count on the XCK26.
_FIT_NAMES = {"luts": "LUTs", "ffs": "FFs", "bram": "BRAM36", "uram": "URAM",
              "dsp": "DSP48E2"}


def summary_lines(report: dict, out_dir, *, build: bool = False, program: bool = False,
                  estimate_resources: bool = True):
    """What :func:`generate`'s report says to a person, after the line naming the design:
    the yosys fit (or that it was skipped) and Vivado's outputs or the command that
    makes them."""
    estimate = report.get("estimate")
    if estimate:
        fit = ", ".join(f"{_FIT_NAMES.get(key, key)} {entry['used']:,}/{entry['available']:,} "
                        f"({entry['percent']:g}%)" for key, entry in estimate["fit"].items())
        yield (f"fits {report['part']} by the yosys estimate (before place and route; "
               f"{estimate['seconds']:.0f} s): {fit}")
    elif not estimate_resources:
        yield "resource estimate skipped (--no-estimate): the fit is unchecked"
    if build and report.get("bitstream"):
        yield "Vivado wrote " + ", ".join(report["bitstream"].values())
    else:
        yield f"bitstream: run `{report['vivado']}` where Vivado is installed"


def generate(config: AcceleratorConfig, out_dir, *, build: bool = False,
             program: bool = False, estimate_resources: bool = True,
             timeout: float = None) -> dict:
    """Write the KV260 design of ``config`` into ``out_dir`` (boards/__init__.py).

    Files: ``<top>.v`` (the board top, :class:`KV260Top`), ``kv260.xdc``,
    ``build_kv260.tcl`` (:func:`vivado_script`), ``config.json`` and, with
    ``estimate_resources``, ``resource_estimate.json`` (:func:`estimate`; ``timeout``
    bounds each Yosys run). ``build`` runs the script with Vivado. ``program`` is
    refused: the KV260 loads its bitstream from its own Linux (docs/boards.md).

    Returns a JSON-able report. Raises :class:`InputError` for a config the board cannot
    take (bus width, memory size, resources) and :class:`TritiumError` when Vivado is
    missing or fails.
    """
    _check_config(config)
    out_dir = Path(out_dir)
    script = out_dir / SCRIPT
    if program:
        raise InputError("the KV260 is programmed from its own Linux, not from here: copy "
                         f"{PROJECT}.bit and {PROJECT}.hwh to the board and load them with "
                         f"PYNQ's Overlay or fpgautil (docs/boards.md)")
    if build and shutil.which("vivado") is None:
        raise TritiumError(f"building the KV260 bitstream needs AMD Vivado, and `vivado` is "
                           f"not on PATH: generate without --build, then run `vivado -mode "
                           f"batch -source {script}` where Vivado is installed")
    from tritium.hw.verilog import generate_verilog
    top_name = toplevel_name(config)
    start = time.monotonic()
    try:
        top = KV260Top(config)
    except ValueError as error:
        raise InputError(f"config {config.name!r} cannot go on the KV260: {error}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{top_name}.v").write_text(generate_verilog(top, top_name, KV260Platform()))
    verilog_seconds = round(time.monotonic() - start, 1)
    (out_dir / XDC).write_text(_XDC.format())
    script.write_text(vivado_script(config))
    (out_dir / "config.json").write_text(config.to_json())
    files = [f"{top_name}.v", XDC, SCRIPT, "config.json"]
    report = {
        "board": "kv260", "config": config.name, "design_id": f"{config.design_id:08x}",
        "toplevel": top_name, "part": KV260Platform().part, "clock_hz": config.clock_hz,
        "link_window": f"0x{LINK_WINDOW_ADDRESS:08x}",
        "memory_bytes": config.memory_words * config.memory.bytes_per_word,
        "verilog_seconds": verilog_seconds, "files": files,
        "vivado": f"vivado -mode batch -source {script}",
    }
    if estimate_resources:
        result = _synthesize(config, out_dir / "yosys", timeout)
        files.append("resource_estimate.json")
        try:
            result["fit"] = check_fit(result["resources"], config.name)
        except InputError as error:
            result["error"] = str(error)          # kept with the figures it comes from
            raise
        finally:
            (out_dir / "resource_estimate.json").write_text(json.dumps(result, indent=1))
        report["estimate"] = {key: result[key] for key in ("kind", "tool", "flow", "seconds",
                                                           "fit")}
    if build:
        report["bitstream"] = _run_vivado(out_dir)
    return report


def _run_vivado(out_dir: Path) -> dict:
    """Run the script in ``out_dir`` with Vivado; return the outputs' paths."""
    command = ["vivado", "-mode", "batch", "-notrace", "-source", SCRIPT,
               "-log", "vivado.log", "-journal", "vivado.jou"]
    done = subprocess.run(command, cwd=out_dir, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [line for line in done.stdout.splitlines() if line.startswith("ERROR:")]
        reason = errors[0] if errors else f"exit status {done.returncode}"
        raise TritiumError(f"Vivado failed ({reason}); log: {out_dir / 'vivado.log'}")
    outputs = {kind: out_dir / f"{PROJECT}.{kind}" for kind in ("bit", "hwh", "xsa")}
    missing = [str(path) for path in outputs.values() if not path.exists()]
    if missing:
        raise TritiumError(f"Vivado finished without writing {', '.join(missing)}")
    return {kind: str(path) for kind, path in outputs.items()}
