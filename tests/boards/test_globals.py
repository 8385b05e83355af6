"""The netlist pass that puts the widest clock enables on ECP5 global networks."""

import json

from tritium.boards import globals as ecp5_globals

CLOCK, RESET, RESET_GLOBAL = 2, 3, 4


def _ff(clock, enable=None, data=50):
    connections = {"CLK": [clock], "DI": [data], "Q": [data + 1]}
    if enable is not None:
        connections["CE"] = [enable]
    return {"type": "TRELLIS_FF", "connections": connections,
            "port_directions": {"CLK": "input", "CE": "input", "DI": "input", "Q": "output"}}


def _netlist(enables: dict, reset_buffer: bool = True) -> dict:
    """A top module whose flip-flops share ``clock``; ``enables`` maps an enable net
    (bit) to the flip-flops it reaches. Each enable also feeds one LUT."""
    cells, netnames = {}, {"clk": {"bits": [CLOCK]}}
    for bit, fanout in enables.items():
        netnames[f"enable{bit}"] = {"bits": [bit]}
        for k in range(fanout):
            cells[f"ff{bit}_{k}"] = _ff(CLOCK, bit)
        cells[f"lut{bit}"] = {"type": "LUT4", "connections": {"A": [bit], "Z": [60]},
                              "port_directions": {"A": "input", "Z": "output"}}
    cells["plain"] = _ff(CLOCK)
    if reset_buffer:
        cells["reset_buffer"] = {"type": "DCCA",
                                 "connections": {"CLKI": [RESET], "CE": ["1"],
                                                 "CLKO": [RESET_GLOBAL]}}
    return {"modules": {"top": {"attributes": {"top": "1"}, "cells": cells,
                                "netnames": netnames}}}


def _enable_users(module, bit):
    return sum(cell["connections"].get("CE") == [bit] for cell in module["cells"].values())


def test_the_widest_enables_move_to_global_buffers_and_nothing_else_does():
    netlist = _netlist({10: 40, 11: 30, 12: 5})
    promoted = ecp5_globals.promote_enables(netlist, "top", min_fanout=20)
    assert promoted == [("enable10", 40), ("enable11", 30)]          # 12 is too narrow
    module = netlist["modules"]["top"]
    buffers = {cell["connections"]["CLKI"][0]: cell["connections"]["CLKO"][0]
               for name, cell in module["cells"].items()
               if cell["type"] == "DCCA" and name != "reset_buffer"}
    for bit, fanout in ((10, 40), (11, 30)):
        assert _enable_users(module, bit) == 0
        assert _enable_users(module, buffers[bit]) == fanout          # every CE moved
        assert module["cells"][f"lut{bit}"]["connections"]["A"] == [bit]   # logic stays
        assert module["netnames"][f"enable{bit}$global"]["bits"] == [buffers[bit]]
    assert _enable_users(module, 12) == 5
    assert set(buffers.values()).isdisjoint({CLOCK, RESET, RESET_GLOBAL, 10, 11, 12, 50,
                                             51, 60})                # fresh net bits
    assert len(set(buffers.values())) == 2


def test_only_free_global_networks_are_used():
    # Eight fabric globals: the clock and the reset's buffer take two, six are left.
    enables = {bit: 100 + bit for bit in range(10, 20)}
    promoted = ecp5_globals.promote_enables(_netlist(enables), "top", min_fanout=1)
    assert [fanout for _, fanout in promoted] == [119, 118, 117, 116, 115, 114]
    without_reset = ecp5_globals.promote_enables(_netlist(enables, reset_buffer=False), "top",
                                                 min_fanout=1)
    assert len(without_reset) == 7


def test_the_command_rewrites_the_netlist_file(tmp_path, capsys):
    path = tmp_path / "design.json"
    path.write_text(json.dumps(_netlist({10: ecp5_globals.MIN_FANOUT, 11: 3})))
    assert ecp5_globals.main([str(path)]) == 0
    assert capsys.readouterr().out == (f"global network: enable10 (clock enable of "
                                       f"{ecp5_globals.MIN_FANOUT} flip-flops)\n")
    module = json.loads(path.read_text())["modules"]["top"]
    assert _enable_users(module, 10) == 0 and _enable_users(module, 11) == 3


def test_the_command_refuses_bad_input_in_one_line(tmp_path, capsys):
    missing = tmp_path / "missing.json"
    assert ecp5_globals.main([str(missing)]) == 2
    assert capsys.readouterr().err.startswith(f"ERROR: cannot read the netlist {missing}")
    no_top = tmp_path / "no_top.json"
    no_top.write_text(json.dumps({"modules": {"m": {"cells": {}, "netnames": {}}}}))
    assert ecp5_globals.main([str(no_top)]) == 2
    assert capsys.readouterr().err == f"ERROR: {no_top} has no top module\n"
    assert ecp5_globals.main([]) == 2
