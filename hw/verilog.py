"""Verilog from the gateware: what ``tritium generate``, the board flows and the
simulator builds all write."""

import os

__all__ = ["generate_verilog"]


def generate_verilog(component, name: str, platform=None) -> str:
    """Verilog text of a component, deterministic (no source paths embedded), elaborated
    for ``platform`` (a board's, for its RAM attributes; none for simulation).

    Uses Amaranth's built-in Yosys, so the text does not depend on other Yosys installs.
    """
    from amaranth.back import verilog
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    return verilog.convert(component, name=name, platform=platform, emit_src=False)
