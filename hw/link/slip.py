"""SLIP framing (RFC 1055) of a byte stream, and the CRC-32 the frames carry."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .protocol import END, ESC, ESC_END, ESC_ESC

__all__ = ["frame_byte_layout", "byte_beat_layout", "SlipDecoder", "SlipEncoder", "crc32_update"]

CRC32_POLYNOMIAL = 0xEDB88320           # IEEE 802.3, bit-reversed (as zlib)


def frame_byte_layout() -> data.StructLayout:
    """A received frame's byte, or (``end``) the end of the frame with its escape status."""
    return data.StructLayout({"data": unsigned(8), "end": unsigned(1), "bad": unsigned(1)})


def byte_beat_layout() -> data.StructLayout:
    """A byte of an outgoing frame; ``last`` ends the frame."""
    return data.StructLayout({"data": unsigned(8), "last": unsigned(1)})


def _crc32_step(crc: int, byte: int) -> int:
    crc ^= byte
    for _ in range(8):
        crc = (crc >> 1) ^ (CRC32_POLYNOMIAL if crc & 1 else 0)
    return crc


def _crc32_taps() -> list:
    """For each bit of the next CRC register, the bits of (crc, byte) it is the XOR of:
    the byte step is linear over GF(2), so unit inputs give its matrix."""
    columns = [_crc32_step(1 << i, 0) for i in range(32)] + \
              [_crc32_step(0, 1 << i) for i in range(8)]
    return [[j for j, column in enumerate(columns) if column >> bit & 1] for bit in range(32)]


_CRC32_TAPS = _crc32_taps()


def crc32_update(crc, byte):
    """The CRC-32 register after one more byte (reflected, as zlib, before inversion):
    one XOR of a few input bits per output bit, not eight chained shifts (which, written
    as nested expressions, would repeat the register's logic 2**8 times in the Verilog)."""
    bits = Cat(crc, byte)
    return Cat(*(Cat(*(bits[j] for j in taps)).xor() for taps in _CRC32_TAPS))


class SlipDecoder(wiring.Component):
    """Undo SLIP escaping: line bytes in, frame bytes and end-of-frame markers out.

    An ``END`` becomes an ``end`` beat (also for an empty frame; the receiver ignores
    those). ``bad`` on the end beat says the frame held an ``ESC`` not followed by
    ``ESC_END`` or ``ESC_ESC``; such a byte pair is dropped.

    Members
    -------
    line : ``In(stream.Signature(8))``
    frames : ``Out(stream.Signature(frame_byte_layout()))``
    """

    line: In(stream.Signature(8))
    frames: Out(stream.Signature(frame_byte_layout()))

    def elaborate(self, platform):
        m = Module()
        escaped, bad = Signal(), Signal()
        byte, out = self.line.payload, self.frames
        m.d.comb += self.line.ready.eq(~out.valid | out.ready)
        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(self.line.valid & self.line.ready):
            with m.If(byte == END):
                m.d.sync += [out.valid.eq(1), out.payload.end.eq(1),
                             out.payload.bad.eq(bad | escaped), escaped.eq(0), bad.eq(0)]
            with m.Elif(escaped):
                m.d.sync += escaped.eq(0)
                with m.If((byte == ESC_END) | (byte == ESC_ESC)):
                    m.d.sync += [out.valid.eq(1), out.payload.end.eq(0),
                                 out.payload.data.eq(Mux(byte == ESC_END, END, ESC))]
                with m.Else():
                    m.d.sync += bad.eq(1)
            with m.Elif(byte == ESC):
                m.d.sync += escaped.eq(1)
            with m.Else():
                m.d.sync += [out.valid.eq(1), out.payload.end.eq(0), out.payload.data.eq(byte)]
        return m


class SlipEncoder(wiring.Component):
    """SLIP-escape frame bytes onto the line; an ``END`` follows each frame's last byte.

    Members
    -------
    frames : ``In(stream.Signature(byte_beat_layout()))``
    line : ``Out(stream.Signature(8))``
    """

    frames: In(stream.Signature(byte_beat_layout()))
    line: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        second = Signal(8)                  # the escaped byte's second half
        has_second, end_pending = Signal(), Signal()
        beat, out = self.frames.payload, self.line
        free = ~out.valid | out.ready
        special = (beat.data == END) | (beat.data == ESC)
        m.d.comb += self.frames.ready.eq(free & ~has_second & ~end_pending)
        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(free & has_second):
            m.d.sync += [out.valid.eq(1), out.payload.eq(second), has_second.eq(0)]
        with m.Elif(free & end_pending):
            m.d.sync += [out.valid.eq(1), out.payload.eq(END), end_pending.eq(0)]
        with m.Elif(self.frames.valid & self.frames.ready):
            m.d.sync += [out.valid.eq(1), out.payload.eq(Mux(special, ESC, beat.data)),
                         has_second.eq(special), end_pending.eq(beat.last),
                         second.eq(Mux(beat.data == END, ESC_END, ESC_ESC))]
        return m
