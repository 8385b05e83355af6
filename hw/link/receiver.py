"""Frame reception: header, payload into the frame buffer, and the checks."""

from amaranth import Module, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .protocol import (CRC_BYTES, CRC_RESIDUE, ERR_CRC, ERR_ESCAPE, ERR_LENGTH, HEADER_BYTES)
from .slip import crc32_update, frame_byte_layout

__all__ = ["frame_header_layout", "FrameReceiver"]


def frame_header_layout() -> data.StructLayout:
    """A received frame: its header fields, and the error code of a failed check (0: ok)."""
    return data.StructLayout({"type": unsigned(8), "tag": unsigned(8), "length": unsigned(16),
                              "error": unsigned(8)})


class FrameReceiver(wiring.Component):
    """Take a frame's bytes, store its payload in the frame buffer and check it.

    At the frame's end the header goes out on ``frame`` with ``error`` set to the first
    failed check (escape, length, CRC; ``docs/link.md``). The receiver takes no more
    bytes until ``frame`` is taken, so the consumer takes it once it is done with the
    buffer. Empty frames (two ``END`` in a row) produce nothing.

    Members
    -------
    frames : ``In(stream.Signature(frame_byte_layout()))``
    frame : ``Out(stream.Signature(frame_header_layout()))``
    buffer_addr, buffer_data, buffer_en : ``Out``
        The frame buffer's write port: payload byte ``i`` goes to address ``i``.
    """

    def __init__(self, max_payload: int):
        self._max_payload = max_payload
        super().__init__({
            "frames": In(stream.Signature(frame_byte_layout())),
            "frame": Out(stream.Signature(frame_header_layout())),
            "buffer_addr": Out(range(max_payload)),
            "buffer_data": Out(8),
            "buffer_en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        limit = HEADER_BYTES + self._max_payload + CRC_BYTES
        count = Signal(range(limit + 2))          # bytes so far, saturating past the limit
        crc = Signal(32, init=0xFFFFFFFF)
        header = Signal(32)                        # type, tag, length (little endian)
        beat, out = self.frames.payload, self.frame
        fields = frame_header_layout()(out.payload)
        take = self.frames.valid & self.frames.ready
        payload_index = count - HEADER_BYTES
        m.d.comb += [
            self.frames.ready.eq(~out.valid),
            self.buffer_addr.eq(payload_index), self.buffer_data.eq(beat.data),
            self.buffer_en.eq(take & ~beat.end & (count >= HEADER_BYTES) &
                              (payload_index < self._max_payload)),
        ]
        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(take & ~beat.end):
            m.d.sync += crc.eq(crc32_update(crc, beat.data))
            with m.If(count <= limit):
                m.d.sync += count.eq(count + 1)
            for index in range(HEADER_BYTES):
                with m.If(count == index):
                    m.d.sync += header[8 * index:8 * index + 8].eq(beat.data)
        with m.If(take & beat.end):
            m.d.sync += [count.eq(0), crc.eq(0xFFFFFFFF), header.eq(0)]
            length = header[16:32]
            error = Signal(8)
            with m.If(beat.bad):
                m.d.comb += error.eq(ERR_ESCAPE)
            with m.Elif((count < HEADER_BYTES + CRC_BYTES) | (count > limit) |
                        (length != count - HEADER_BYTES - CRC_BYTES)):
                m.d.comb += error.eq(ERR_LENGTH)
            with m.Elif(crc != CRC_RESIDUE):
                m.d.comb += error.eq(ERR_CRC)
            with m.If(count != 0):
                m.d.sync += [out.valid.eq(1), fields.type.eq(header[0:8]),
                             fields.tag.eq(header[8:16]), fields.length.eq(length),
                             fields.error.eq(error)]
        return m
