"""Frame transmission: header, payload and CRC-32 of a reply."""

from amaranth import Module, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .protocol import CRC_BYTES, HEADER_BYTES
from .slip import byte_beat_layout, crc32_update

__all__ = ["reply_layout", "FrameSender"]


def reply_layout() -> data.StructLayout:
    return data.StructLayout({"type": unsigned(8), "tag": unsigned(8), "length": unsigned(16)})


class FrameSender(wiring.Component):
    """Send a reply frame: its header from ``reply``, ``length`` bytes from ``payload``,
    then the CRC-32 of both; ``last`` on the final CRC byte.

    Members
    -------
    reply : ``In(stream.Signature(reply_layout()))``
    payload : ``In(stream.Signature(8))``
    frames : ``Out(stream.Signature(byte_beat_layout()))``
    """

    reply: In(stream.Signature(reply_layout()))
    payload: In(stream.Signature(8))
    frames: Out(stream.Signature(byte_beat_layout()))

    def elaborate(self, platform):
        m = Module()
        shift = Signal(8 * HEADER_BYTES)     # header, then the inverted CRC, shifted out
        left = Signal(16)                    # bytes left in the current part
        crc = Signal(32, init=0xFFFFFFFF)
        out = self.frames
        free = ~out.valid | out.ready
        byte, emit, last = Signal(8), Signal(), Signal()
        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(emit):
            m.d.sync += [out.valid.eq(1), out.payload.data.eq(byte), out.payload.last.eq(last),
                         crc.eq(crc32_update(crc, byte)), left.eq(left - 1)]
        length = Signal(16)
        with m.FSM():
            with m.State("idle"):
                m.d.comb += self.reply.ready.eq(1)
                with m.If(self.reply.valid):
                    fields = self.reply.payload
                    m.d.sync += [shift.eq(fields.as_value()), length.eq(fields.length),
                                 left.eq(HEADER_BYTES), crc.eq(0xFFFFFFFF)]
                    m.next = "header"
            with m.State("header"):
                m.d.comb += [byte.eq(shift[:8]), emit.eq(free)]
                with m.If(emit):
                    m.d.sync += shift.eq(shift >> 8)
                    with m.If(left == 1):
                        m.d.sync += left.eq(length)
                        m.next = "payload"
            with m.State("payload"):
                m.d.comb += [byte.eq(self.payload.payload),
                             self.payload.ready.eq(free & (left != 0)),
                             emit.eq(free & self.payload.valid & (left != 0))]
                with m.If(left == 0):
                    m.d.sync += [shift.eq(~crc), left.eq(CRC_BYTES)]
                    m.next = "crc"
            with m.State("crc"):
                m.d.comb += [byte.eq(shift[:8]), emit.eq(free), last.eq(left == 1)]
                with m.If(emit):
                    m.d.sync += shift.eq(shift >> 8)
                    with m.If(left == 1):
                        m.next = "idle"
        return m
