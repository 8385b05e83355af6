"""Helpers for ``amaranth.sim`` testbenches: streams with random gaps and back-pressure.

Every stream stage is tested with a producer that inserts random idle cycles and a
consumer that drops ``ready`` at random; both take a seeded ``random.Random`` so a
failure can be replayed.
"""

import random

from amaranth.sim import Simulator

__all__ = ["Traffic", "stream_send", "stream_receive", "run_simulation", "watchdog", "TRAFFIC",
           "first_word_latency"]


class Traffic:
    """How often a producer idles and a consumer stalls (probabilities per cycle)."""

    def __init__(self, name: str, idle: float, stall: float):
        self.name, self.idle, self.stall = name, idle, stall

    def __repr__(self):
        return self.name


TRAFFIC = [Traffic("smooth", 0.0, 0.0), Traffic("gaps", 0.4, 0.0),
           Traffic("backpressure", 0.0, 0.5), Traffic("both", 0.3, 0.3)]


async def stream_send(ctx, stream, payloads, rng: random.Random = None, idle: float = 0.0):
    """Send each payload in order, idling before a transfer with probability ``idle``."""
    rng = rng or random.Random(0)
    for payload in payloads:
        while rng.random() < idle:
            ctx.set(stream.valid, 0)
            await ctx.tick()
        ctx.set(stream.payload, payload)
        ctx.set(stream.valid, 1)
        await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_receive(ctx, stream, count: int, rng: random.Random = None,
                         stall: float = 0.0, decode=None) -> list:
    """Receive ``count`` payloads, holding ``ready`` low with probability ``stall`` per cycle.

    ``decode`` turns each sampled payload into a Python value (default: the payload's
    value as the simulator returns it).
    """
    rng = rng or random.Random(1)
    received = []
    while len(received) < count:
        ready = rng.random() >= stall
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if ready and valid:
            received.append(decode(payload) if decode else payload)
    ctx.set(stream.ready, 0)
    return received


def watchdog(cycles: int):
    """A background testbench that fails the simulation, rather than let it hang, if it
    is still running after ``cycles`` cycles (plain ticks: a pending background
    ``repeat()`` warns when it is collected)."""
    async def bench(ctx):
        for _ in range(cycles):
            await ctx.tick()
        raise AssertionError(f"the testbenches did not end within {cycles} cycles")
    return bench


def run_simulation(dut, *testbenches, background=(), vcd: str = None, deadline: float = None):
    """Run testbenches (async functions of ``ctx``) on ``dut`` with a 100 MHz ``sync`` clock.

    The simulation ends when every testbench has returned; ``background`` testbenches
    (models of the environment, such as a memory) run for as long as the others do.
    ``deadline`` (seconds of simulated time) guards against a hang: the simulation also
    ends there if the testbenches have not returned, and the caller's checks of what
    they collected fail.
    """
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in testbenches:
        sim.add_testbench(bench)
    for bench in background:
        sim.add_testbench(bench, background=True)
    expired = []
    if deadline:
        async def watchdog(ctx):
            await ctx.delay(deadline)
            expired.append(True)
        sim.add_testbench(watchdog, background=True)

    def run():
        while sim.advance() and not expired:
            pass
    if vcd:
        with sim.write_vcd(vcd):
            run()
    else:
        run()


def first_word_latency(dut, port):
    """Cycles from a read command's transfer to its first word on memory port ``port`` of
    ``dut`` (a two-word read from word 5)."""
    result = {}

    async def bench(ctx):
        ctx.set(port.read_cmd.payload, {"addr": 5, "words": 2})
        ctx.set(port.read_cmd.valid, 1)
        ctx.set(port.read_data.ready, 1)
        cycle, issued = 0, None
        while True:
            _, _, taken, arrived = await ctx.tick().sample(port.read_cmd.ready,
                                                           port.read_data.valid)
            cycle += 1
            if taken and issued is None:
                issued = cycle
                ctx.set(port.read_cmd.valid, 0)
            if arrived:
                result["latency"] = cycle - issued
                return

    run_simulation(dut, bench, background=[watchdog(500)])
    return result["latency"]
