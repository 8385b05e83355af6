# amaranth: UnusedElaboratable=no
"""The ResultSplitter (amaranth.sim): an engine's result beats cut into beats of the
vectors' lanes, in row order, ``last`` on a beat's final part, nothing lost under random
gaps and back-pressure."""

import random

import pytest
from amaranth import ClockDomain, Module

from tritium.hw.config import TLMMConfig
from tritium.hw.tlmm.split import ResultSplitter
from tritium.sim.testing.amaranth_tb import TRAFFIC, run_simulation, stream_receive, stream_send

ENGINE = TLMMConfig(group=3, tables=4, rows=6, max_k=48, max_n=48)


@pytest.mark.parametrize("lanes", [1, 2, 3, 6])
@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_beats_leave_in_row_order(lanes, traffic):
    dut = ResultSplitter(ENGINE, lanes)
    rng = random.Random(lanes)
    low, high = -(1 << (ENGINE.acc_width - 1)), (1 << (ENGINE.acc_width - 1)) - 1
    beats = [([rng.randint(low, high) for _ in range(ENGINE.rows)], rng.random() < 0.3)
             for _ in range(40)]
    parts = ENGINE.rows // lanes
    expected = [(accs[p * lanes:(p + 1) * lanes], last and p == parts - 1)
                for accs, last in beats for p in range(parts)]
    received = []

    async def send(ctx):
        await stream_send(ctx, dut.results, [{"acc": accs, "last": last} for accs, last in beats],
                          random.Random(1), traffic.idle)

    async def receive(ctx):
        received.extend(await stream_receive(
            ctx, dut.parts, len(expected), random.Random(2), traffic.stall,
            decode=lambda beat: ([int(a) for a in beat.acc], bool(beat.last))))

    # With lanes == rows the splitter is wires: the clock is the harness's own.
    harness = Module()
    harness.submodules.dut = dut
    harness.domains.sync = ClockDomain()
    run_simulation(harness, send, receive)
    assert received == expected


def test_lanes_must_divide_the_rows():
    with pytest.raises(ValueError, match="positive divisor of the engine's 6 rows, not 4"):
        ResultSplitter(ENGINE, 4)
