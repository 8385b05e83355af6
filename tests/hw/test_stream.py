# amaranth: UnusedElaboratable=no
"""Generic stream stages and the queued pipeline skeleton (amaranth.sim): order kept,
nothing lost, ``ready`` registered."""

import random

import pytest
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tritium.hw.fixedpoint import QueuedPipeline, delay
from tritium.hw.stream import register_stage, skid
from tritium.sim.testing.amaranth_tb import TRAFFIC, run_simulation, stream_receive, stream_send

STAGES = {"skid": skid, "register_stage": register_stage}


class Stage(wiring.Component):
    """One stage from ``i`` to ``o``, as the units use it."""

    def __init__(self, kind):
        self._kind = kind
        super().__init__({"i": In(stream.Signature(16)), "o": Out(stream.Signature(16))})

    def elaborate(self, platform):
        m = Module()
        STAGES[self._kind](m, self.i, self.o, "stage")
        return m


@pytest.mark.parametrize("kind", [*STAGES, "queued1", "queued5"])
@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_stage_keeps_every_payload_in_order(kind, traffic):
    dut = Queued(int(kind[6:])) if kind.startswith("queued") else Stage(kind)
    payloads = random.Random(3).sample(range(1 << 16), 300)
    received = []

    async def send(ctx):
        await stream_send(ctx, dut.i, payloads, random.Random(4), traffic.idle)

    async def receive(ctx):
        received.extend(await stream_receive(ctx, dut.o, len(payloads), random.Random(5),
                                             traffic.stall))

    run_simulation(dut, send, receive)
    assert received == payloads


@pytest.mark.parametrize("kind", STAGES)
def test_stage_ready_does_not_follow_the_sink_combinationally(kind):
    """Within a cycle, the sink's ``ready`` never reaches the source's: it is a register."""
    dut = Stage(kind)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        for cycle in range(12):
            ctx.set(dut.i.payload, cycle)
            ctx.set(dut.o.ready, 0)
            refused = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, 1)
            seen.append((refused, ctx.get(dut.i.ready)))
            ctx.set(dut.o.ready, cycle % 3 == 0)
            await ctx.tick()

    run_simulation(dut, bench)
    assert all(refused == taken for refused, taken in seen)
    assert {refused for refused, _ in seen} == {0, 1}       # it does stall the source


@pytest.mark.parametrize("kind, latency", [("skid", 0), ("register_stage", 1)])
def test_stage_latency(kind, latency):
    dut = Stage(kind)

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.payload, 0x1234)
        ctx.set(dut.i.valid, 1)
        for cycle in range(3):
            if ctx.get(dut.o.valid):
                assert ctx.get(dut.o.payload) == 0x1234
                assert cycle == latency
                return
            await ctx.tick()
            ctx.set(dut.i.valid, 0)
        raise AssertionError("the payload never came out")

    run_simulation(dut, bench)


class Queued(wiring.Component):
    """``i`` through ``latency`` :class:`QueuedPipeline` stages, as the units build on it."""

    def __init__(self, latency):
        self._latency = latency
        super().__init__({"i": In(stream.Signature(16)), "o": Out(stream.Signature(16))})

    def elaborate(self, platform):
        m = Module()
        pipe = QueuedPipeline(m, self.i, self.o, self._latency)
        held = delay(m, self.i.payload, self._latency - 1, pipe.advance, "held")
        m.d.sync += pipe.payload.eq(held)
        return m


def test_queued_pipeline_streams_at_full_rate_after_its_latency():
    latency, count = 6, 40
    dut = Queued(latency)
    taken, given = [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle in range(count + latency + 5):
            ctx.set(dut.i.payload, len(taken))
            ctx.set(dut.i.valid, len(taken) < count)
            if ctx.get(dut.i.valid) and ctx.get(dut.i.ready):
                taken.append(cycle)
            if ctx.get(dut.o.valid):
                given.append((cycle, ctx.get(dut.o.payload)))
            await ctx.tick()

    run_simulation(dut, bench)
    assert taken == list(range(count))
    assert given == [(latency + k, k) for k in range(count)]


def test_queued_pipeline_holds_what_is_in_flight_while_the_sink_refuses():
    """A refused sink stops the intake once the queue is promised to the beats in
    flight (``latency + 1`` of them), loses none, and never lets ``i.ready`` follow
    ``o.ready`` within a cycle."""
    latency = 4
    dut = Queued(latency)
    taken, received, seen = [], [], []

    async def bench(ctx):
        for cycle in range(60):
            refusing = cycle < 30
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, len(taken))
            ctx.set(dut.o.ready, 0)
            before = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, not refusing)
            seen.append(before == ctx.get(dut.i.ready))
            if ctx.get(dut.i.ready):
                taken.append(cycle)
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                received.append(ctx.get(dut.o.payload))
            await ctx.tick()

    run_simulation(dut, bench)
    assert all(seen)
    assert len([c for c in taken if c < 30]) == latency + 1
    assert received == list(range(len(received)))
    assert len(received) >= len(taken) - (latency + 1)
