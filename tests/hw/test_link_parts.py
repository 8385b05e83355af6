# amaranth: UnusedElaboratable=no
"""The command unit's parts (amaranth.sim): the frame-buffer reader's latency, the
replier, and the WRITE and READ movers against on-chip memory, under random gaps and
back-pressure. ``tests/hw/test_link.py`` runs them together through the host's protocol."""

import random

import pytest
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tritium.hw.link import protocol as p
from tritium.hw.link.commands import Replier, answer_layout
from tritium.hw.link.movers import (BufferReader, ReadMover, WriteMover, fetch_layout,
                                    read_command_layout, write_command_layout)
from tritium.hw.link.sender import reply_layout
from tritium.hw.memory import OnChipMemory
from tritium.hw.memory.port import MemoryConfig
from tritium.sim.testing.amaranth_tb import (TRAFFIC, run_simulation, stream_receive, stream_send,
                                      watchdog)

MEMORY = MemoryConfig(data_width=64, addr_width=8, len_width=8)
WORD_BYTES = MEMORY.bytes_per_word
MAX_PAYLOAD = 64
WIDTH = 64                                   # max(8 * ARGUMENT_BYTES, data_width)
DONE = stream.Signature(0)


def simulate(dut, bench, background=(), cycles=20_000):
    """Run ``bench`` to its end; fail (not hang) if it is still running after ``cycles``."""
    run_simulation(dut, bench, background=(*background, watchdog(cycles)))


class Buffered(wiring.Component):
    """A frame buffer holding ``frame`` with a reader on it and, if asked, a WRITE mover
    taking its words into on-chip memory (whose read side the testbench drives)."""

    def __init__(self, frame: bytes, mover=False):
        self._frame, self._mover = frame, mover
        self.memory = OnChipMemory(MEMORY, 64) if mover else None
        members = {"request": In(stream.Signature(fetch_layout(MAX_PAYLOAD, WIDTH))),
                   "data": Out(WIDTH), "idle": Out(1)}
        if mover:
            members = {"command": In(stream.Signature(write_command_layout(MEMORY, MAX_PAYLOAD))),
                       "done": Out(DONE)}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = buffer = Memory(shape=8, depth=MAX_PAYLOAD,
                                              init=list(self._frame))
        m.submodules.reader = reader = BufferReader(MAX_PAYLOAD, WIDTH)
        port = buffer.read_port()
        m.d.comb += [port.addr.eq(reader.buffer_addr), reader.buffer_data.eq(port.data)]
        if not self._mover:
            wiring.connect(m, wiring.flipped(self.request), reader.request)
            m.d.comb += [self.data.eq(reader.data), self.idle.eq(reader.idle)]
            return m
        m.submodules.writer = writer = WriteMover(MEMORY, MAX_PAYLOAD, WIDTH)
        m.submodules.memory = memory = self.memory
        wiring.connect(m, writer.fetch, reader.request)
        m.d.comb += [writer.word.eq(reader.data), writer.fetched.eq(reader.idle)]
        wiring.connect(m, wiring.flipped(self.command), writer.command)
        wiring.connect(m, writer.done, wiring.flipped(self.done))
        for channel in ("write_cmd", "write_data", "write_done"):
            wiring.connect(m, getattr(writer, channel), getattr(memory.port, channel))
        return m


def test_buffer_reader_takes_count_plus_two_cycles():
    frame = bytes(range(10, 10 + MAX_PAYLOAD))
    dut = Buffered(frame)

    async def bench(ctx):
        end = 0
        for at, count, resume in [(0, 6, 0), (6, 8, 0), (0, 3, 1), (40, 1, 0), (41, 8, 1)]:
            ctx.set(dut.request.payload, {"at": at, "count": count, "resume": resume})
            ctx.set(dut.request.valid, 1)
            await ctx.tick().until(dut.request.ready)
            ctx.set(dut.request.valid, 0)
            cycles = 1                               # from the request's cycle
            while not ctx.get(dut.idle):
                await ctx.tick()
                cycles += 1
            assert cycles == count + 2
            start = end if resume else at
            end = start + count
            data = ctx.get(dut.data).to_bytes(WIDTH // 8, "little")
            assert data[WIDTH // 8 - count:] == frame[start:end]

    simulate(dut, bench)


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_write_mover_stores_the_frame_words(traffic):
    rng = random.Random(4)
    words = [rng.randrange(1 << 64) for _ in range(7)]
    frame = (17).to_bytes(p.ADDRESS_BYTES, "little") + b"".join(
        w.to_bytes(WORD_BYTES, "little") for w in words)
    dut = Buffered(frame, mover=True)

    async def bench(ctx):
        port = dut.memory.port                   # its read side is the testbench's
        for address in (17, 40):
            await stream_send(ctx, dut.command, [{"address": address, "words": len(words)}],
                              rng, traffic.idle)
            assert len(await stream_receive(ctx, dut.done, 1, rng, traffic.stall)) == 1
            await stream_send(ctx, port.read_cmd, [{"addr": address, "words": len(words)}])
            got = await stream_receive(ctx, port.read_data, len(words))
            assert [beat.data for beat in got] == words

    simulate(dut, bench)


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_read_mover_replies_with_memory_words(traffic):
    rng = random.Random(5)
    init = [rng.randrange(1 << 64) for _ in range(32)]

    class Bench(wiring.Component):
        command: In(stream.Signature(read_command_layout()))
        reply: Out(stream.Signature(reply_layout()))
        payload: Out(stream.Signature(8))
        done: Out(DONE)

        def elaborate(self, platform):
            m = Module()
            m.submodules.mover = mover = ReadMover(MEMORY, MAX_PAYLOAD)
            m.submodules.memory = memory = OnChipMemory(MEMORY, 32, init)
            m.d.comb += mover.tag.eq(0x5A)
            wiring.connect(m, wiring.flipped(self.command), mover.command)
            for name in ("reply", "payload", "done"):
                wiring.connect(m, getattr(mover, name), wiring.flipped(getattr(self, name)))
            for channel in ("read_cmd", "read_data"):
                wiring.connect(m, getattr(mover, channel), getattr(memory.port, channel))
            return m

    dut = Bench()

    async def bench(ctx):
        for address, count in [(3, 1), (10, 8), (0, 32 // WORD_BYTES)]:
            await stream_send(ctx, dut.command, [{"address": address, "count": count}],
                              rng, traffic.idle)
            [header] = await stream_receive(ctx, dut.reply, 1, rng, traffic.stall)
            assert (header.type, header.tag, header.length) == \
                (p.READ | p.REPLY, 0x5A, count * WORD_BYTES)
            got = await stream_receive(ctx, dut.payload, count * WORD_BYTES, rng, traffic.stall)
            want = b"".join(w.to_bytes(WORD_BYTES, "little") for w in init[address:address + count])
            assert bytes(got) == want
            assert len(await stream_receive(ctx, dut.done, 1, rng, traffic.stall)) == 1

    simulate(dut, bench)


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_replier_sends_header_then_content(traffic):
    rng = random.Random(6)
    dut = Replier()
    answers = [(p.INFO | p.REPLY, p.INFO_BYTES, int.from_bytes(bytes(range(1, 16)), "little")),
               (p.SET | p.REPLY, 0, 0), (p.ERROR, 2, 0x0305), (p.RUN | p.REPLY, 1, 0x1FF)]

    async def bench(ctx):
        ctx.set(dut.tag, 9)
        for kind, length, content in answers:
            await stream_send(ctx, dut.answer, [{"type": kind, "length": length,
                                                 "content": content}], rng, traffic.idle)
            [header] = await stream_receive(ctx, dut.reply, 1, rng, traffic.stall)
            assert (header.type, header.tag, header.length) == (kind, 9, length)
            got = await stream_receive(ctx, dut.payload, length, rng, traffic.stall)
            assert bytes(got) == content.to_bytes(answer_layout().size // 8, "little")[:length]
            assert len(await stream_receive(ctx, dut.done, 1, rng, traffic.stall)) == 1

    simulate(dut, bench)
