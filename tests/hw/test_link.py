# amaranth: UnusedElaboratable=no
"""Host link (amaranth.sim): the gateware against the host-side protocol code.

Frames come from ``host.link.encode_frame`` and replies are read with
``host.link.FrameDecoder``/``parse_frame``, so the two descriptions of the protocol are
checked against each other; damaged frames must be rejected and never executed.
"""

import random
import re
import struct

import pytest
from amaranth import Module, Signal
from amaranth.back import verilog
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tritium.host.link import FrameDecoder, encode_frame, parse_frame
from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.hw.link import protocol as p
from tritium.hw.link.host_link import HostLink
from tritium.hw.link.registers import Register, RegisterFile
from tritium.hw.memory import OnChipMemory
from tritium.hw.memory.port import MemoryConfig
from tritium.sim.testing.amaranth_tb import TRAFFIC, run_simulation, stream_send

MEMORY = MemoryConfig(data_width=32, addr_width=8, len_width=8)
WORDS = 200
MAX_PAYLOAD = 64
DESIGN = 0x7E57AB1E
REGISTERS = [Register("position", 0, writable=True), Register("mode", 1, writable=True, init=3),
             Register("cycles", 5)]


class LinkBench(wiring.Component):
    """The link with on-chip memory, a register file and a controller that answers RUN
    with its argument plus one, ``delay`` cycles later."""

    rx: In(stream.Signature(8))
    tx: Out(stream.Signature(8))

    def __init__(self, delay=5):
        self._delay = delay
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = HostLink(MEMORY, WORDS, MAX_PAYLOAD, DESIGN)
        m.submodules.memory = memory = OnChipMemory(MEMORY, WORDS)
        m.submodules.registers = registers = RegisterFile(REGISTERS)
        wiring.connect(m, wiring.flipped(self.rx), link.rx)
        wiring.connect(m, link.tx, wiring.flipped(self.tx))
        wiring.connect(m, link.memory, memory.port)
        wiring.connect(m, link.registers, registers.bus)
        m.d.comb += registers.cycles.eq(0xCAFEF00D)
        timer, runs = Signal(8), Signal(32)
        result = link.finished.payload
        m.d.comb += link.run.ready.eq(timer == 0)
        with m.If(link.run.valid & link.run.ready):
            # The status is the argument + 1; "cycles" shows the position and mode (index
            # 1, which a RUN with position and tokens sets as its tokens) the run saw.
            m.d.sync += [timer.eq(self._delay), runs.eq(runs + 1),
                         result.status.eq(link.run.payload + 1), result.runs.eq(runs + 1),
                         result.cycles.eq(registers.position * 256 + registers.mode[:8])]
        with m.If(timer > 1):
            m.d.sync += timer.eq(timer - 1)
        with m.If(timer == 1):
            m.d.comb += link.finished.valid.eq(1)
            with m.If(link.finished.ready):
                m.d.sync += timer.eq(0)
        return m


def exchange(wire: bytes, replies: int, traffic=TRAFFIC[0], seed=0) -> list:
    """Send ``wire`` bytes, collect ``replies`` reply frames as (type, tag, payload)."""
    dut = LinkBench()
    got = []

    async def send(ctx):
        await stream_send(ctx, dut.rx, list(wire), random.Random(seed), traffic.idle)

    async def receive(ctx):
        decoder, rng, cycles = FrameDecoder(), random.Random(seed + 1), 0
        while len(got) < replies:
            ready = rng.random() >= traffic.stall
            ctx.set(dut.tx.ready, ready)
            _, _, valid, byte = await ctx.tick().sample(dut.tx.valid, dut.tx.payload)
            if valid and ready:
                for raw, bad in decoder.feed(bytes([byte])):
                    assert not bad
                    got.append(parse_frame(raw))
            cycles += 1
            assert cycles < 200 * len(wire) + 2000, f"only {len(got)} of {replies} replies"

    run_simulation(dut, send, receive)
    return got


def frame(kind, payload=b"", tag=7):
    return encode_frame(kind, tag, payload)


def error(code, kind, tag=7):
    return (p.ERROR, tag, bytes([code, kind]))


def test_info_identifies_the_design():
    [(kind, tag, body)] = exchange(frame(p.INFO, tag=42), 1)
    assert (kind, tag) == (p.INFO | p.REPLY, 42)
    assert body[:4] == p.MAGIC
    assert struct.unpack("<HHHIB", body[4:]) == (p.PROTOCOL_VERSION, MAX_PAYLOAD, 4, DESIGN, 8)


@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_write_then_read_back(traffic):
    rng = random.Random(3)
    data = bytes(rng.randrange(256) for _ in range(60))    # 15 words, every byte value range
    data = data[:10] + bytes([p.END, p.ESC, p.ESC_END]) + data[13:]  # bytes SLIP escapes
    wire = (frame(p.WRITE, struct.pack("<I", 100) + data, tag=1)
            + frame(p.READ, struct.pack("<IH", 100, 15), tag=2)
            + frame(p.READ, struct.pack("<IH", 104, 2), tag=3))
    assert exchange(wire, 3, traffic, seed=11) == [
        (p.WRITE | p.REPLY, 1, b""), (p.READ | p.REPLY, 2, data),
        (p.READ | p.REPLY, 3, data[16:24])]


def test_registers_and_run():
    wire = (frame(p.GET, bytes([1]), tag=1) + frame(p.SET, struct.pack("<BI", 0, 1234), tag=2)
            + frame(p.GET, bytes([0]), tag=3) + frame(p.GET, bytes([5]), tag=4)
            + frame(p.RUN, bytes([9]), tag=5)
            + frame(p.SET, struct.pack("<BI", 5, 1), tag=6)    # read-only
            + frame(p.GET, bytes([2]), tag=7)                  # no such register
            + frame(p.RUN, struct.pack(p.RUN_SET_FORMAT, 4, 77, 2), tag=8)
            + frame(p.GET, bytes([0]), tag=9) + frame(p.GET, bytes([1]), tag=10)
            + frame(p.RUN, bytes(3), tag=11))                  # neither RUN's length
    assert exchange(wire, 11) == [
        (p.GET | p.REPLY, 1, struct.pack("<I", 3)), (p.SET | p.REPLY, 2, b""),
        (p.GET | p.REPLY, 3, struct.pack("<I", 1234)),
        (p.GET | p.REPLY, 4, struct.pack("<I", 0xCAFEF00D)),
        (p.RUN | p.REPLY, 5, struct.pack(p.RUN_REPLY_FORMAT, 10, 1, 1234 * 256 + 3)),
        error(p.ERR_ARGUMENT, p.SET, 6), error(p.ERR_ARGUMENT, p.GET, 7),
        # RUN with position and tokens sets both before the run starts.
        (p.RUN | p.REPLY, 8, struct.pack(p.RUN_REPLY_FORMAT, 5, 2, 77 * 256 + 2)),
        (p.GET | p.REPLY, 9, struct.pack("<I", 77)), (p.GET | p.REPLY, 10, struct.pack("<I", 2)),
        error(p.ERR_ARGUMENT, p.RUN, 11)]


def corrupt(wire: bytes, index: int) -> bytes:
    """Flip bits of the byte at ``index`` (never into a SLIP special byte)."""
    flipped = wire[index] ^ 0x01
    assert flipped not in (p.END, p.ESC) and wire[index] not in (p.END, p.ESC)
    return wire[:index] + bytes([flipped]) + wire[index + 1:]


def test_damaged_frames_are_rejected_and_never_executed():
    """A bad CRC, a truncated frame, a bad escape, an oversized frame, an unknown
    command and bad arguments each get their error; the memory keeps its old contents
    and the next good frame works."""
    old = bytes(range(8))
    new = struct.pack("<I", 20) + bytes(range(100, 108))
    truncated = frame(p.WRITE, new, tag=3)[:-6]              # END is lost with the tail
    wire = (frame(p.WRITE, struct.pack("<I", 20) + old, tag=1)
            + corrupt(frame(p.WRITE, new, tag=2), 8)
            + truncated
            + frame(p.READ, struct.pack("<IH", 20, 2), tag=4)
            + bytes([p.END, 0x01, p.ESC, 0x42, p.END])       # escape of a plain byte
            + frame(p.WRITE, struct.pack("<I", 0) + bytes(MAX_PAYLOAD), tag=5)
            + frame(0x33, b"", tag=6)
            + frame(p.WRITE, struct.pack("<I", WORDS - 1) + bytes(8), tag=8)   # past the end
            + frame(p.WRITE, struct.pack("<I", 0) + bytes(6), tag=9)           # not whole words
            + frame(p.READ, struct.pack("<IH", 0, 0), tag=10)
            + frame(p.INFO, b"x", tag=11)
            + bytes([p.END, p.END])                                            # empty: ignored
            + frame(p.READ, struct.pack("<IH", 20, 2), tag=12))
    replies = exchange(wire, 12)
    assert replies[0] == (p.WRITE | p.REPLY, 1, b"")
    assert replies[1] == error(p.ERR_CRC, p.WRITE, 2)
    # The truncated frame ran into the next frame's leading END: a length error.
    assert replies[2][0] == p.ERROR and replies[2][2][0] == p.ERR_LENGTH
    assert replies[3] == (p.READ | p.REPLY, 4, old)
    assert replies[4][0] == p.ERROR and replies[4][2][0] == p.ERR_ESCAPE
    assert replies[5] == error(p.ERR_LENGTH, p.WRITE, 5)
    assert replies[6] == error(p.ERR_COMMAND, 0x33, 6)
    assert replies[7:11] == [error(p.ERR_ARGUMENT, p.WRITE, 8),
                             error(p.ERR_ARGUMENT, p.WRITE, 9),
                             error(p.ERR_ARGUMENT, p.READ, 10),
                             error(p.ERR_ARGUMENT, p.INFO, 11)]
    assert replies[11] == (p.READ | p.REPLY, 12, old)


def test_host_frame_codec_round_trip():
    rng = random.Random(5)
    payload = bytes(rng.randrange(256) for _ in range(300)) + bytes([p.END, p.ESC] * 5)
    decoder = FrameDecoder()
    wire = encode_frame(p.WRITE, 200, payload)
    frames = decoder.feed(wire[:17]) + decoder.feed(wire[17:])
    assert [parse_frame(raw) for raw, bad in frames if not bad] == [(p.WRITE, 200, payload)]


# An ``always @*`` whose body only assigns a constant reads nothing, so Verilator never
# runs it and the bits keep their initial value (its warning ALWNEVER). Amaranth's
# Verilog has one where a constant drives part of a signal another part of which is set
# in a branch; the cosimulation of the top would then behave unlike amaranth.sim.
NEVER_RUNS = re.compile(r"always @\*\n\s*[^\n]*? = \d+'[hbd][0-9a-fA-F_]+;")


@pytest.mark.parametrize("preset", ["tiny", "ulx3s"])
def test_link_verilog_has_no_always_block_that_never_runs(preset):
    config = ACCELERATOR_PRESETS[preset]
    link = HostLink(config.memory, config.memory_words, config.max_payload, config.design_id)
    assert NEVER_RUNS.findall(verilog.convert(link, name="link")) == []
