"""Clock enables of very high fan-out carried on the ECP5's global networks, between
Yosys and nextpnr-ecp5: ``python -m tritium.boards.globals NETLIST.json``.

nextpnr-ecp5 puts only clocks on the global networks. In a deeply pipelined design a
handful of clock enables each reach a thousand or more flip-flops (a unit's
``valid``, the attention core's ``ready``); in the general routing each is a tree
across much of the device, and in the ULX3S design they were the most congested nets
when nextpnr's router stopped converging (docs/boards.md, "Build figures"). On a
global network they take no general routing: the networks reach every slice's
clock-enable input. This is what Lattice's own tools do by themselves ("promotion" of
high fan-out enables to primary clock routing).

The pass rewrites the Yosys JSON netlist in place: for each chosen net a DCCA (the
global buffer) is inserted, driven by the net, and the flip-flops' CE inputs move to
its output; every other user stays on the net. Logic is unchanged.
"""

import collections
import json
import sys
from pathlib import Path

__all__ = ["FABRIC_GLOBALS", "MIN_FANOUT", "promote_enables", "main"]

#: Global networks nextpnr-ecp5 routes to slices' logic inputs (its "fabric globals"
#: 0-7); clocks and the design's own DCCAs (its reset, boards/ecp5.py) take theirs first.
FABRIC_GLOBALS = 8
#: Flip-flops an enable must reach to be worth a global network.
MIN_FANOUT = 512


def promote_enables(netlist: dict, top: str, min_fanout: int = MIN_FANOUT) -> list:
    """Put the clock enables of at least ``min_fanout`` flip-flops of module ``top`` on
    the free global networks, the widest first; return ``(net name, fan-out)`` of each."""
    module = netlist["modules"][top]
    cells = module["cells"]
    enables, clocks = collections.Counter(), set()
    for cell in cells.values():
        if cell["type"] == "TRELLIS_FF":
            clocks.update(_bits(cell, "CLK"))
            enables.update(_bits(cell, "CE"))
    buffers = sum(cell["type"] == "DCCA" for cell in cells.values())
    free = FABRIC_GLOBALS - buffers - len(clocks)
    chosen = [(bit, fanout) for bit, fanout in enables.most_common(max(free, 0))
              if fanout >= min_fanout]
    names = _net_names(module)
    next_bit = 1 + max(_all_bits(module))
    buffered_bits = {bit: next_bit + index for index, (bit, _) in enumerate(chosen)}
    for cell in cells.values():                     # every chosen enable's CEs in one pass
        enable = _bits(cell, "CE")
        if cell["type"] == "TRELLIS_FF" and enable and enable[0] in buffered_bits:
            cell["connections"]["CE"] = [buffered_bits[enable[0]]]
    promoted = []
    for index, (bit, fanout) in enumerate(chosen):
        buffered = buffered_bits[bit]
        name = names.get(bit, f"net{bit}")
        cells[f"$enable_gbuf{index}"] = {
            "hide_name": 1, "type": "DCCA", "parameters": {}, "attributes": {},
            "port_directions": {"CLKI": "input", "CE": "input", "CLKO": "output"},
            "connections": {"CLKI": [bit], "CE": ["1"], "CLKO": [buffered]}}
        module["netnames"][f"{name}$global"] = {"hide_name": 0, "bits": [buffered],
                                                "attributes": {}}
        promoted.append((name, fanout))
    return promoted


def _bits(cell: dict, port: str) -> list:
    """The net bits (ints; constants are strings) on ``port`` of ``cell``."""
    return [bit for bit in cell["connections"].get(port, []) if isinstance(bit, int)]


def _all_bits(module: dict):
    """Every net bit the module names or connects."""
    for net in module["netnames"].values():
        yield from (bit for bit in net["bits"] if isinstance(bit, int))
    for cell in module["cells"].values():
        for port in cell["connections"]:
            yield from _bits(cell, port)


def _net_names(module: dict) -> dict:
    """A name for each net bit: the shortest of the names Yosys kept for it."""
    names = {}
    for name, net in module["netnames"].items():
        for bit in net["bits"]:
            if isinstance(bit, int) and (bit not in names or len(name) < len(names[bit])):
                names[bit] = name
    return names


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tritium.boards.globals NETLIST.json", file=sys.stderr)
        return 2
    path = Path(args[0])
    try:
        netlist = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"ERROR: cannot read the netlist {path}: {exc}", file=sys.stderr)
        return 2
    top = next((name for name, module in netlist.get("modules", {}).items()
                if module.get("attributes", {}).get("top")), None)
    if top is None:
        print(f"ERROR: {path} has no top module", file=sys.stderr)
        return 2
    for name, fanout in promote_enables(netlist, top):
        print(f"global network: {name} (clock enable of {fanout} flip-flops)")
    path.write_text(json.dumps(netlist))
    return 0


if __name__ == "__main__":
    sys.exit(main())
