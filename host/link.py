"""The host side of the link (docs/link.md): frames, replies and the commands.

:class:`LinkClient` speaks the protocol over any byte transport that has
``send(data: bytes)`` and ``receive(timeout: float) -> bytes`` (which returns what has
arrived, at least one byte, or raises :class:`LinkTimeout`). It sends one frame and
waits for its reply (stop and wait), so the device never has to buffer more than
one frame.
"""

import struct
import zlib
from dataclasses import dataclass

from tritium.hw.link import protocol as p
from .errors import TritiumError

__all__ = ["LinkError", "LinkTimeout", "DeviceError", "encode_frame", "FrameDecoder",
           "parse_frame", "DeviceInfo", "LinkClient", "pad_to_words"]


def pad_to_words(data: bytes, word_bytes: int) -> bytes:
    """``data`` padded with zeros to whole memory words, as a WRITE stores it."""
    return bytes(data) + bytes(-len(data) % word_bytes)


class LinkError(TritiumError):
    """The link carried something the protocol does not allow."""


class LinkTimeout(LinkError):
    """The device did not answer in time."""


class DeviceError(LinkError):
    """The device rejected a frame; ``code`` is one of ``protocol.ERRORS``."""

    def __init__(self, code: int, command: int):
        self.code, self.command = code, command
        name = p.ERRORS.get(code, f"error {code}")
        super().__init__(f"the device rejected command 0x{command:02x}: {name}")


def _escape(data: bytes) -> bytes:
    return (data.replace(bytes([p.ESC]), bytes([p.ESC, p.ESC_ESC]))
                .replace(bytes([p.END]), bytes([p.ESC, p.ESC_END])))


def encode_frame(kind: int, tag: int, payload: bytes = b"") -> bytes:
    """One frame on the wire: SLIP-escaped header, payload and CRC, between two ENDs
    (the leading END flushes any noise the device has half-received)."""
    if len(payload) >= 2 ** 16:
        raise LinkError(f"a frame payload holds at most 65535 bytes, not {len(payload)}")
    body = struct.pack(p.HEADER_FORMAT, kind, tag, len(payload)) + payload
    body += struct.pack("<I", zlib.crc32(body))
    return bytes([p.END]) + _escape(body) + bytes([p.END])


class FrameDecoder:
    """Undo SLIP framing of a byte stream; yields each non-empty frame's raw bytes."""

    def __init__(self):
        self._frame, self._escaped, self._bad = bytearray(), False, False

    def feed(self, data: bytes) -> list:
        """Frames completed by ``data``: ``(raw bytes, bad_escape)`` pairs."""
        frames = []
        for byte in data:
            if byte == p.END:
                if self._frame or self._bad:
                    frames.append((bytes(self._frame), self._bad or self._escaped))
                self._frame, self._escaped, self._bad = bytearray(), False, False
            elif self._escaped:
                self._escaped = False
                if byte in (p.ESC_END, p.ESC_ESC):
                    self._frame.append(p.END if byte == p.ESC_END else p.ESC)
                else:
                    self._bad = True
            elif byte == p.ESC:
                self._escaped = True
            else:
                self._frame.append(byte)
        return frames


def parse_frame(raw: bytes):
    """``(type, tag, payload)`` of an unescaped frame; LinkError if it is damaged."""
    if len(raw) < p.HEADER_BYTES + p.CRC_BYTES:
        raise LinkError(f"a reply of {len(raw)} bytes is shorter than a header and CRC")
    kind, tag, length = struct.unpack_from(p.HEADER_FORMAT, raw)
    if length != len(raw) - p.HEADER_BYTES - p.CRC_BYTES:
        raise LinkError(f"a reply says {length} payload bytes but carries "
                        f"{len(raw) - p.HEADER_BYTES - p.CRC_BYTES}")
    if zlib.crc32(raw[:-p.CRC_BYTES]) != struct.unpack_from("<I", raw, len(raw) - 4)[0]:
        raise LinkError("a reply failed its CRC check")
    return kind, tag, raw[p.HEADER_BYTES:-p.CRC_BYTES]


@dataclass(frozen=True)
class DeviceInfo:
    version: int
    max_payload: int
    word_bytes: int
    design: int
    addr_width: int


class LinkClient:
    """The commands of the protocol over a byte transport."""

    def __init__(self, transport, timeout: float = 10.0):
        self.transport, self.timeout = transport, timeout
        self._decoder, self._tag, self._info = FrameDecoder(), 0, None

    def request(self, kind: int, payload: bytes = b"", timeout: float = None) -> bytes:
        """Send one command and return its reply's payload; DeviceError if rejected."""
        self._tag = (self._tag + 1) % 256
        self.transport.send(encode_frame(kind, self._tag, payload))
        while True:
            for raw, bad in self._decoder.feed(self.transport.receive(timeout or self.timeout)):
                if bad:
                    raise LinkError("a reply had a bad escape sequence")
                reply, tag, body = parse_frame(raw)
                if tag != self._tag:
                    raise LinkError(f"a reply carries tag {tag}, expected {self._tag}")
                if reply == p.ERROR:
                    raise DeviceError(*body[:2])
                if reply != kind | p.REPLY:
                    raise LinkError(f"command 0x{kind:02x} got a reply of type 0x{reply:02x}")
                return body

    def info(self) -> DeviceInfo:
        body = self.request(p.INFO)
        if len(body) != p.INFO_BYTES or body[:4] != p.MAGIC:
            raise LinkError("the device did not identify itself as a tritium accelerator")
        _, version, max_payload, word_bytes, design, addr_width = struct.unpack(p.INFO_FORMAT, body)
        self._info = DeviceInfo(version, max_payload, word_bytes, design, addr_width)
        return self._info

    @property
    def device(self) -> DeviceInfo:
        return self._info or self.info()

    def write(self, address: int, data: bytes):
        """Store ``data`` (padded to whole words) from word ``address``, frame by frame."""
        info = self.device
        data = pad_to_words(data, info.word_bytes)
        chunk = (info.max_payload - 4) // info.word_bytes * info.word_bytes
        for start in range(0, len(data), chunk):
            self.request(p.WRITE, struct.pack("<I", address + start // info.word_bytes)
                         + data[start:start + chunk])

    def read(self, address: int, words: int) -> bytes:
        info = self.device
        per_frame = info.max_payload // info.word_bytes
        parts = []
        for start in range(0, words, per_frame):
            count = min(per_frame, words - start)
            parts.append(self.request(p.READ, struct.pack("<IH", address + start, count)))
        return b"".join(parts)

    def set(self, register: int, value: int):
        self.request(p.SET, struct.pack("<BI", register, value & 0xFFFFFFFF))

    def get(self, register: int) -> int:
        return struct.unpack("<I", self.request(p.GET, bytes([register])))[0]

    def run(self, argument: int = 0, timeout: float = None) -> int:
        """Start the controller; return its status byte when it finishes."""
        return self.request(p.RUN, bytes([argument]), timeout)[0]
