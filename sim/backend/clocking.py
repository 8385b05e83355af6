"""Clock and reset for cocotb testbenches, with nothing but cocotb itself.

The ``sim`` transport's bridge (``sim/backend/bridge.py``) runs at a user's ``tritium demo``,
where only the runtime dependencies are installed; the testbench helpers with the
cocotbext-axi bus models (``sim/testing/cocotb_tb.py``) are for the tests.
"""

from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

__all__ = ["start_clock", "reset"]


def start_clock(dut, period_ns: int = 10):
    Clock(dut.clk, period_ns, unit="ns").start()


async def reset(dut, cycles: int = 2):
    """Hold the synchronous, active-high reset for ``cycles`` rising edges."""
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
