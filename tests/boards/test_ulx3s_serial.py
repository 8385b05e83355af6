"""Tier 3 for the ULX3S: the ``serial:`` transport runs the tiny model end to end on the
cycle-accurate simulation of the board's core (UART, accelerator, LEDs), through a
pseudo-terminal: pyserial, the terminal and every byte are what the board's USB UART
carries, and each byte crosses the simulated serial lines bit by bit.

The UART runs at 4 clock cycles per bit here (the board's own divisor, for 3 Mbaud at its
clock, is in docs/boards.md): the same logic with a smaller constant, so that loading
the model's 188 KB over the serial lines takes less simulated time."""

from pathlib import Path

import numpy as np
import pytest

from tritium import boards
from tritium.boards.ulx3s import BoardCore
from tritium.host.accelerator import Accelerator
from tritium.host.importers import load_model
from tritium.host.sim_transport import SimTransport
from tritium.host.transports import open_transport
from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.sim.golden.model import GoldenModel
from tritium.sim.backend.harness import UartSimTop
from tritium.host.pty_bridge import PtyBridge

pytestmark = pytest.mark.cosim

ULX3S = ACCELERATOR_PRESETS["ulx3s"]
DIVISOR = 4
# The board core is built from the board modules too: a change to them rebuilds it.
BOARD_SOURCES = sorted(Path(boards.__file__).parent.glob("*.py"))


def test_the_tiny_model_runs_on_the_simulated_board_over_a_serial_port():
    model = load_model("tiny")
    golden = GoldenModel(model)
    cache = golden.new_cache()
    simulation = SimTransport(
        ULX3S, variant=f"uart{DIVISOR}", harness_sources=BOARD_SOURCES,
        harness=lambda: UartSimTop(BoardCore(ULX3S, DIVISOR, light_cycles=8), DIVISOR))
    with simulation, PtyBridge(simulation) as bridge, \
            Accelerator(ULX3S, open_transport(f"serial:{bridge.port}", ULX3S),
                        timeout=600) as accelerator:
        accelerator.load(model)
        ids = [79, 110, 99, 101, 32]                  # runs of ULX3S.max_tokens
        assert np.array_equal(accelerator.prefill(ids), golden.forward(ids, cache))
        token = 117
        for step in range(3):
            got, want = accelerator.decode(token), golden.forward([token], cache)[-1]
            assert np.array_equal(got, want), f"decode step {step}"
            token = int(np.argmax(want))
    assert bridge.failure is None
