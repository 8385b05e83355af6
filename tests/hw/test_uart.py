# amaranth: UnusedElaboratable=no
"""UART (amaranth.sim): loopback with random traffic, receiver vs a line model, tx waveform."""

import random

import pytest
from amaranth import Module

from tritium.hw.link.uart import UARTReceiver, UARTTransmitter, uart_divisor
from tritium.sim.testing.amaranth_tb import (TRAFFIC, run_simulation, stream_receive, stream_send,
                                      watchdog)

SPECIAL = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80]


def frame(byte: int, stop: int = 1) -> list:
    """Return the 8N1 line levels of one byte, one per bit: start, data LSB first, stop."""
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


async def drive_line(ctx, rx, bits, period: float):
    """Put ``bits`` on ``rx``, each ``period`` cycles long (may be fractional), then idle."""
    for cycle in range(round(len(bits) * period)):
        ctx.set(rx, bits[min(int(cycle / period), len(bits) - 1)])
        await ctx.tick()
    ctx.set(rx, 1)


def simulate(dut, *benches, cycles: int):
    """Run ``benches`` together; fail, rather than hang, if they are not done in ``cycles``."""
    run_simulation(dut, *benches, background=[watchdog(cycles)])


async def assert_quiet(ctx, dut, cycles: int):
    """Check that no byte is offered and no flag is raised for ``cycles`` cycles."""
    for _ in range(cycles):
        await ctx.tick()
        assert not ctx.get(dut.data.valid), "an unexpected byte came out"
        assert not ctx.get(dut.overrun) and not ctx.get(dut.framing_error)


# Loopback ----------------------------------------------------------------------------------

@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
@pytest.mark.parametrize("divisor", [4, 5, 16])
def test_loopback(divisor, traffic):
    rng = random.Random(divisor)
    payloads = SPECIAL + [rng.randrange(256) for _ in range(34)]
    rng.shuffle(payloads)
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(divisor)
    m.submodules.rx = rx = UARTReceiver(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    result = {}

    async def send(ctx):
        await stream_send(ctx, tx.data, payloads, random.Random(divisor + 1), traffic.idle)

    async def receive(ctx):
        # Stalls are per cycle and a byte takes 10 * divisor cycles, so no overrun happens.
        result["bytes"] = await stream_receive(ctx, rx.data, len(payloads),
                                               random.Random(divisor + 2), traffic.stall)
        await assert_quiet(ctx, rx, 12 * divisor)

    simulate(m, send, receive, cycles=20 * divisor * (len(payloads) + 5))
    assert result["bytes"] == payloads


# Receiver against a line model -------------------------------------------------------------

@pytest.mark.parametrize("rate", [0.98, 1.0, 1.02])
@pytest.mark.parametrize("divisor", [4, 16, 33])
def test_receiver_rate_tolerance(divisor, rate):
    rng = random.Random(divisor)
    payloads = SPECIAL + [rng.randrange(256) for _ in range(10)]
    bits = [1, 1] + [bit for byte in payloads for bit in frame(byte)]   # frames back to back
    dut = UARTReceiver(divisor)
    result = {}

    async def line(ctx):
        await drive_line(ctx, dut.rx, bits, divisor * rate)

    async def receive(ctx):
        result["bytes"] = await stream_receive(ctx, dut.data, len(payloads), random.Random(3),
                                               stall=0.3)
        await assert_quiet(ctx, dut, 12 * divisor)

    simulate(dut, line, receive, cycles=12 * divisor * (len(payloads) + 5))
    assert result["bytes"] == payloads


@pytest.mark.parametrize("divisor", [4, 5, 16])
def test_receiver_latency(divisor):
    dut = UARTReceiver(divisor)
    assert dut.latency == divisor // 2 + 3

    async def bench(ctx):
        ctx.set(dut.data.ready, 0)
        bits = frame(0x5A) + [1] * divisor
        for cycle in range(len(bits) * divisor):
            ctx.set(dut.rx, bits[cycle // divisor])
            await ctx.tick()
            # ctx.get after the tick shows the value of cycle + 1.
            if ctx.get(dut.data.valid):
                assert cycle + 1 - 9 * divisor == dut.latency
                assert ctx.get(dut.data.payload) == 0x5A
                return
        raise AssertionError("no byte received")

    simulate(dut, bench, cycles=40 * divisor)


@pytest.mark.parametrize("divisor", [4, 16])
def test_receiver_ignores_glitch(divisor):
    dut = UARTReceiver(divisor)
    result = {}

    async def line(ctx):
        await ctx.tick().repeat(5)
        await drive_line(ctx, dut.rx, [0], 1)            # low for one cycle only
        await assert_quiet(ctx, dut, 12 * divisor)
        await drive_line(ctx, dut.rx, frame(0x3C), divisor)

    async def receive(ctx):
        result["bytes"] = await stream_receive(ctx, dut.data, 1)

    simulate(dut, line, receive, cycles=40 * divisor)
    assert result["bytes"] == [0x3C]


@pytest.mark.parametrize("divisor", [4, 16])
def test_receiver_framing_error(divisor):
    dut = UARTReceiver(divisor)
    result = {}

    async def line(ctx):
        await drive_line(ctx, dut.rx, [1] + frame(0xC3, stop=0) + [0], divisor)
        await ctx.tick().repeat(3)                       # through the synchronizer
        assert ctx.get(dut.framing_error) and not ctx.get(dut.data.valid)
        await drive_line(ctx, dut.rx, [1, 1] + frame(0x81), divisor)

    async def receive(ctx):
        # The bad byte never comes out; the next good one does, and the flag stays set.
        result["bytes"] = await stream_receive(ctx, dut.data, 1)
        result["flags"] = ctx.get(dut.framing_error), ctx.get(dut.overrun)

    simulate(dut, line, receive, cycles=40 * divisor)
    assert result["bytes"] == [0x81]
    assert result["flags"] == (1, 0)


@pytest.mark.parametrize("divisor", [4, 16])
def test_receiver_overrun(divisor):
    dut = UARTReceiver(divisor)

    async def bench(ctx):
        ctx.set(dut.data.ready, 0)
        await drive_line(ctx, dut.rx, [1] + frame(0xA7), divisor)
        await ctx.tick().repeat(divisor)
        assert ctx.get(dut.data.valid) and not ctx.get(dut.overrun)
        await drive_line(ctx, dut.rx, frame(0x18), divisor)
        await ctx.tick().repeat(divisor)
        assert ctx.get(dut.overrun) and not ctx.get(dut.framing_error)
        # The first byte is still there, intact; the second was dropped.
        ctx.set(dut.data.ready, 1)
        _, _, valid, payload = await ctx.tick().sample(dut.data.valid, dut.data.payload)
        assert (valid, payload) == (1, 0xA7)
        await ctx.tick().repeat(12 * divisor)
        assert not ctx.get(dut.data.valid) and ctx.get(dut.overrun)

    simulate(dut, bench, cycles=40 * divisor)


# Transmitter -------------------------------------------------------------------------------

@pytest.mark.parametrize("payloads", [[0xA5], [0x0F, 0xF0], [0x00, 0xFF, 0x55]], ids=repr)
@pytest.mark.parametrize("divisor", [4, 5, 16])
def test_transmitter_waveform(divisor, payloads):
    dut = UARTTransmitter(divisor)
    line = []

    async def send(ctx):
        await ctx.tick().repeat(3)
        await stream_send(ctx, dut.data, payloads)       # all queued: no idle between them

    async def monitor(ctx):
        for _ in range((len(payloads) * 10 + 3) * divisor + 3):
            line.append(ctx.get(dut.tx))
            await ctx.tick()

    simulate(dut, send, monitor, cycles=40 * divisor * len(payloads))
    start = line.index(0)
    expected = [bit for byte in payloads for bit in frame(byte) for _ in range(divisor)]
    assert start == 4                                    # taken at tick 3, start bit after it
    assert line[start:start + len(expected)] == expected
    assert all(line[:start]) and all(line[start + len(expected):])


# Configuration -----------------------------------------------------------------------------

def test_uart_divisor():
    assert uart_divisor(100_000_000, 3_000_000) == 33
    assert uart_divisor(100_000_000, 115_200) == 868
    assert uart_divisor(12_000_000, 1_000_000) == 12


@pytest.mark.parametrize("clock_hz, baud", [(10_000_000, 3_000_000),    # divisor 3
                                            (10_000_000, 1_800_000),    # 7.4% off
                                            (1_000_000, 3_000_000)])    # divisor 0
def test_uart_divisor_rejects(clock_hz, baud):
    with pytest.raises(ValueError, match=rf"clock {clock_hz} Hz .* {baud} baud.*error"):
        uart_divisor(clock_hz, baud)


@pytest.mark.parametrize("cls", [UARTReceiver, UARTTransmitter])
@pytest.mark.parametrize("divisor", [3, 0, -4, 4.0])
def test_rejects_divisor(cls, divisor):
    with pytest.raises(ValueError, match=rf"^{cls.__name__} divisor .*not {divisor!r}$"):
        cls(divisor)
