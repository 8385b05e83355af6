"""The host side of the link (docs/link.md): frames, replies and the commands.

:class:`LinkClient` speaks the protocol over any byte transport that has
``send(data: bytes)`` and ``receive(timeout: float) -> bytes`` (which returns what has
arrived, at least one byte, or raises :class:`LinkTimeout`). It sends one frame and
waits for its reply (stop and wait), so the device never has to buffer more than
one frame.

It recovers from a damaged link (docs/link.md, "Recovery"): every request has one
deadline, counted from its sending, however the reply's bytes trickle in; replies to
other requests, damaged frames and noise are discarded while it waits; a lost or
damaged reply, or the device's report of a damaged frame, makes it send the request
again, up to :data:`ATTEMPTS` times (every command but RUN is idempotent); RUN is sent
again only once the ``run_tag`` register shows that the device did not run it. Every
reply is checked whole before use, so a failure is one :class:`LinkError` line.

A decode step is one exchange: RUN carries the run's ``position`` and ``tokens`` and a
tag (its argument, one more than the last RUN's), and its reply the status, the run
counter and the run's cycles. The device keeps the last RUN's tag in ``run_tag``, which
is what tells a RUN that never arrived from one whose reply was lost.
"""

import collections
import struct
import time
import zlib
from dataclasses import dataclass

from tritium.hw.control.isa import REGISTERS
from tritium.hw.link import protocol as p
from .errors import TritiumError

__all__ = ["LinkError", "LinkTimeout", "DeviceError", "encode_frame", "FrameDecoder",
           "parse_frame", "DeviceInfo", "RunResult", "LinkClient", "pad_to_words", "ATTEMPTS",
           "SHORT_TIMEOUT", "FRAME_TIMEOUT"]

ATTEMPTS = 3            # sendings of one request before its failure is reported
PROBE_BACKOFF_LIMIT = 60.0  # seconds between the run-counter probes of a long RUN, at most
FRAME_TIMEOUT = 30.0    # seconds for WRITE and READ: a frame of at most 64 KiB, 0.2 s at
#                         3 Mbaud and well under a second on a simulated top, so a lost
#                         reply is retried soon; only RUN may take the client's timeout
SHORT_TIMEOUT = 2.0     # seconds for INFO (the first contact), GET and SET: a device
#                         answers them at once, so a silent port is reported quickly.
#                         WRITE, READ and RUN get the client's (long) timeout.
RESENT_ERRORS = (p.ERR_ESCAPE, p.ERR_LENGTH, p.ERR_CRC)   # the frame was damaged on the way
NAMES = {kind: name.upper() for name, kind in p.COMMANDS.items()}
REPLY_BYTES = {p.INFO: p.INFO_BYTES, p.WRITE: 0, p.SET: 0, p.GET: 4, p.RUN: p.RUN_REPLY_BYTES}


def pad_to_words(data: bytes, word_bytes: int) -> bytes:
    """``data`` padded with zeros to whole memory words, as a WRITE stores it."""
    return bytes(data) + bytes(-len(data) % word_bytes)


class LinkError(TritiumError):
    """The link carried something the protocol does not allow."""


class LinkTimeout(LinkError):
    """The device did not answer in time."""


class DeviceError(LinkError):
    """The device rejected a frame; ``code`` is one of ``protocol.ERRORS``."""

    def __init__(self, code: int, command: int, note: str = ""):
        self.code, self.command = code, command
        name = p.ERRORS.get(code, f"error {code}")
        super().__init__(f"the device rejected command 0x{command:02x}: {name}{note}")


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

    @property
    def partial(self) -> bool:
        """Whether bytes of an unfinished frame are waiting for their END."""
        return bool(self._frame or self._escaped or self._bad)

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
    if zlib.crc32(raw[:-p.CRC_BYTES]) != struct.unpack_from("<I", raw, len(raw) - 4)[0]:
        raise LinkError("a reply failed its CRC check")
    kind, tag, length = struct.unpack_from(p.HEADER_FORMAT, raw)
    if length != len(raw) - p.HEADER_BYTES - p.CRC_BYTES:
        raise LinkError(f"a reply says {length} payload bytes but carries "
                        f"{len(raw) - p.HEADER_BYTES - p.CRC_BYTES}")
    return kind, tag, raw[p.HEADER_BYTES:-p.CRC_BYTES]


@dataclass(frozen=True)
class DeviceInfo:
    version: int
    max_payload: int
    word_bytes: int
    design: int
    addr_width: int


class _Lost(Exception):
    """The current attempt's reply is lost: a timeout, a damaged frame, or the device's
    report of a damaged request; ``timeout`` tells the first from the others."""

    def __init__(self, message: str, timeout: bool = False):
        super().__init__(message)
        self.timeout = timeout


@dataclass(frozen=True)
class RunResult:
    """How a RUN ended: its status, the device's ``runs`` counter after it and the run's
    ``cycles`` (the registers of the same names)."""
    status: int
    runs: int
    cycles: int


class LinkClient:
    """The commands of the protocol over a byte transport, with recovery.

    ``timeout`` (seconds) bounds RUN, which may be slow (a long run on a simulated
    top); WRITE and READ get ``frame_timeout``, and INFO, GET and SET, which a device
    answers at once, ``short_timeout`` (both at most ``timeout``). Each sending of a
    request has its own deadline; a request is sent at most ``attempts`` times.
    """

    def __init__(self, transport, timeout: float = 10.0, short_timeout: float = SHORT_TIMEOUT,
                 attempts: int = ATTEMPTS, frame_timeout: float = FRAME_TIMEOUT):
        if attempts < 1:
            raise ValueError(f"a request needs at least 1 attempt, not {attempts}")
        self.transport, self.timeout, self.attempts = transport, timeout, attempts
        self.short_timeout = min(short_timeout, timeout)
        self.frame_timeout = min(frame_timeout, timeout)
        self._decoder, self._frames = FrameDecoder(), collections.deque()
        self._tag, self._info = 0, None
        self.recovered = 0              # requests that needed more than one exchange
        self.last_run = None            # the RunResult of the last RUN
        self._run_tag = None            # the tag of this client's last RUN, when known
        self.discarded = 0              # damaged frames received
        self.sent_bytes = 0             # link bytes to the device, frames' ENDs included
        self.received_bytes = 0         # link bytes from the device
        self.wait_seconds = 0.0         # time spent waiting in the transport's receive

    # -- frames -----------------------------------------------------------------------

    def timeout_of(self, kind: int) -> float:
        """The deadline of one sending of command ``kind``, in seconds."""
        if kind in (p.INFO, p.GET, p.SET):
            return self.short_timeout
        return self.frame_timeout if kind in (p.WRITE, p.READ) else self.timeout

    def _send(self, kind: int, payload: bytes) -> int:
        """Send a frame with a new tag; return the tag."""
        self._tag = (self._tag + 1) % 256
        frame = encode_frame(kind, self._tag, payload)
        self.transport.send(frame)
        self.sent_bytes += len(frame)
        return self._tag

    def _forget(self) -> None:
        """Drop what arrived before a new request: nothing in it can be its reply."""
        self._decoder, self._frames = FrameDecoder(), collections.deque()

    def _next_frame(self, deadline: float):
        """The next frame to arrive before ``deadline`` (``time.monotonic()``):
        ``(type, tag, payload)``; raises :class:`_Lost` for a damaged frame and
        :class:`_Lost` (``timeout``) when none is complete by the deadline."""
        while True:
            while not self._frames:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Lost("bytes arrived but no complete frame" if self._decoder.partial
                                else "no reply", timeout=True)
                started = time.perf_counter()
                try:
                    data = self.transport.receive(max(round(remaining, 3), 0.001))
                except LinkTimeout as error:
                    raise _Lost(str(error), timeout=True) from None
                finally:
                    self.wait_seconds += time.perf_counter() - started
                self.received_bytes += len(data)
                self._frames.extend(self._decoder.feed(data))
            raw, bad = self._frames.popleft()
            try:
                if bad:
                    raise LinkError("a reply had a bad escape sequence")
                return parse_frame(raw)
            except LinkError as error:
                self.discarded += 1
                if not self._frames:        # else what came after it may be the reply
                    raise _Lost(str(error)) from None

    def _resync(self) -> None:
        """Drop an unfinished frame before sending again after a timeout: it is the
        head of a reply cut short, and would damage the reply to come."""
        self._decoder = FrameDecoder()

    @staticmethod
    def _error(body: bytes, name: str) -> DeviceError:
        if len(body) != 2:
            raise LinkError(f"the device's error reply to {name} carries {len(body)} "
                            f"payload bytes, not 2")
        return DeviceError(body[0], body[1])

    @staticmethod
    def _checked(kind: int, reply: int, body: bytes, expected: int) -> bytes:
        """``body`` if the reply is ``kind``'s with ``expected`` bytes; else LinkError."""
        name = NAMES.get(kind, f"0x{kind:02x}")
        if reply != kind | p.REPLY:
            raise LinkError(f"command {name} got a reply of type 0x{reply:02x}")
        if expected is not None and len(body) != expected:
            raise LinkError(f"the device's {name} reply carries {len(body)} payload bytes, "
                            f"not {expected}")
        return body

    def _failure(self, kind: int, timeout: float, problems: list) -> LinkError:
        """The error that reports a request whose every attempt was lost."""
        name = NAMES.get(kind, f"0x{kind:02x}")
        sent = f"{name} sent {len(problems)} time{'s' if len(problems) > 1 else ''}"
        last = problems[-1]
        if isinstance(last, DeviceError):
            return DeviceError(last.code, last.command, f" ({sent})")
        if all(getattr(problem, "timeout", False) for problem in problems):
            reason = str(last)
            if reason in ("no reply", "bytes arrived but no complete frame"):
                reason = f"{reason} within {timeout:g} s"
            return LinkTimeout(f"{reason} ({sent})")
        return LinkError(f"{last} ({sent})")

    # -- requests ---------------------------------------------------------------------

    def request(self, kind: int, payload: bytes = b"", timeout: float = None,
                expected: int = None) -> bytes:
        """Send one command and return its reply's payload (``expected`` bytes long, if
        given); send it again when its reply is lost, up to ``attempts`` times.

        Only for idempotent commands: every command but RUN (:meth:`run`). Raises
        :class:`DeviceError` when the device rejects the command itself, and
        :class:`LinkError` (:class:`LinkTimeout` if nothing came) naming what was wrong
        when no attempt got a good reply."""
        if kind == p.RUN:
            raise LinkError("RUN is not idempotent: send it with LinkClient.run")
        timeout = self.timeout_of(kind) if timeout is None else timeout
        self._forget()
        tags, problems = set(), []
        while len(problems) < self.attempts:
            tags.add(self._send(kind, payload))
            deadline = time.monotonic() + timeout
            try:
                while True:
                    reply, tag, body = self._next_frame(deadline)
                    if tag not in tags:
                        continue                # a late reply to an earlier request
                    if reply == p.ERROR:
                        error = self._error(body, NAMES.get(kind, f"0x{kind:02x}"))
                        if error.code not in RESENT_ERRORS:
                            raise error
                        if tag != self._tag:
                            continue            # an earlier sending's: this one is on its way
                        problems.append(error)
                        break
                    # A reply to any sending of this request: they are all the same.
                    body = self._checked(kind, reply, body, expected)
                    self.recovered += bool(problems)
                    return body
            except _Lost as lost:
                problems.append(lost)
                if lost.timeout:
                    self._resync()
        raise self._failure(kind, timeout, problems)

    def info(self) -> DeviceInfo:
        body = self.request(p.INFO, expected=p.INFO_BYTES)
        if body[:4] != p.MAGIC:
            raise LinkError(f"the device did not identify itself as a tritium accelerator "
                            f"(INFO began with {bytes(body[:4])!r}, not {p.MAGIC!r})")
        _, version, max_payload, word_bytes, design, addr_width = struct.unpack(p.INFO_FORMAT, body)
        if word_bytes == 0 or max_payload < p.ADDRESS_BYTES + word_bytes:
            raise LinkError(f"the device's INFO reply is inconsistent: {word_bytes} bytes per "
                            f"word, max_payload {max_payload}")
        self._info = DeviceInfo(version, max_payload, word_bytes, design, addr_width)
        return self._info

    @property
    def device(self) -> DeviceInfo:
        return self._info or self.info()

    def write(self, address: int, data: bytes):
        """Store ``data`` (padded to whole words) from word ``address``, frame by frame.

        A WRITE sent again stores the same bytes at the same address, so a lost reply
        makes it send the frame again, and a frame the device executed is never reported
        as failed once a sending of it is acknowledged."""
        info = self.device
        data = pad_to_words(data, info.word_bytes)
        chunk = (info.max_payload - 4) // info.word_bytes * info.word_bytes
        for start in range(0, len(data), chunk):
            self.request(p.WRITE, struct.pack("<I", address + start // info.word_bytes)
                         + data[start:start + chunk], expected=0)

    def read(self, address: int, words: int) -> bytes:
        info = self.device
        per_frame = info.max_payload // info.word_bytes
        parts = []
        for start in range(0, words, per_frame):
            count = min(per_frame, words - start)
            parts.append(self.request(p.READ, struct.pack("<IH", address + start, count),
                                      expected=count * info.word_bytes))
        return b"".join(parts)

    def set(self, register: int, value: int):
        self.request(p.SET, struct.pack("<BI", register, value & 0xFFFFFFFF), expected=0)

    def get(self, register: int) -> int:
        return struct.unpack("<I", self.request(p.GET, bytes([register]), expected=4))[0]

    def run(self, timeout: float = None, position: int = None, tokens: int = None) -> int:
        """Start the controller; return its status byte when it finishes (the whole
        :class:`RunResult` is :attr:`last_run`). With ``position`` and ``tokens`` the
        device sets those registers first, in the same frame.

        RUN's argument is a tag, 1 .. 255, one more than the last RUN's (read from
        ``run_tag`` before this client's first RUN, and after a RUN that failed), which
        the device keeps in ``run_tag``. RUN is never sent twice blindly: when its reply
        is late (nothing for ``short_timeout``) or damaged, ``run_tag`` is read (a probe,
        which the device answers only when it is not running): this RUN's tag means the
        run happened, and ``status``, ``runs`` and ``cycles`` hold its results; the tag
        before it means the device never got RUN, which is sent again (at most
        ``attempts`` times). While probes go unanswered the device may still be running,
        so the client waits for either reply until RUN's deadline (``timeout``, default
        the client's).

        A RUN executed twice (a frame duplicated on the way) computes the same values
        into the same places (a run never writes its own inputs, docs/program.md), so it
        is harmless; its second reply is dropped as a stale frame."""
        timeout = self.timeout if timeout is None else timeout
        if (position is None) != (tokens is None):
            raise ValueError("RUN sets position and tokens together, or neither")
        before = self._run_tag
        if before is None:
            before = self.get(REGISTERS["run_tag"]) & 0xFF
        mark = before % 255 + 1                     # 1 .. 255, never the tag before it
        self._run_tag = None                        # unknown until this RUN is settled
        payload = (bytes([mark]) if position is None else
                   struct.pack(p.RUN_SET_FORMAT, mark, position, tokens))
        self._forget()
        frame_tags, problems = set(), []
        for sending in range(1, self.attempts + 1):
            frame_tags.add(self._send(p.RUN, payload))
            result = self._await_run(frame_tags, mark, before, time.monotonic() + timeout,
                                     timeout, problems)
            if result is not None:
                break
            problems.append(_Lost("the device did not receive RUN (its run tag did not "
                                  "change)"))
        else:
            raise LinkError(f"{problems[-1]} (RUN sent {self.attempts} times)")
        self.recovered += bool(problems)
        self._run_tag, self.last_run = mark, result
        return result.status

    def _await_run(self, frame_tags, mark, before, deadline, timeout, problems):
        """Wait for the reply to any sending of RUN (``frame_tags``) until ``deadline``,
        probing ``run_tag`` when it is late; the :class:`RunResult`, or None when a probe
        shows that the device did not run (send RUN again)."""
        probe = bytes([REGISTERS["run_tag"]])
        probe_tags = set()              # probes sent since this sending of RUN
        interval = min(self.short_timeout, timeout / 2)
        probe_at = time.monotonic() + interval
        while True:
            now = time.monotonic()
            if now >= deadline:
                # A last probe, with its own deadlines: a device still running (or
                # gone) does not answer it.
                try:
                    value = self.get(REGISTERS["run_tag"])
                except LinkTimeout:
                    raise LinkTimeout(f"no reply to RUN within {timeout:g} s, nor to a GET "
                                      f"of the run tag after it") from None
                return self._ran(value, mark, before, problems)
            if now >= probe_at:
                probe_tags.add(self._send(p.GET, probe))
                probe_at = now + interval
                # A long run (minutes of simulation) answers no probe until it ends, and
                # queued probes must stay few (tags wrap at 256): back off, to a minute.
                interval = min(2 * interval, max(PROBE_BACKOFF_LIMIT, interval))
            try:
                reply, tag, body = self._next_frame(min(deadline, probe_at))
            except _Lost as lost:
                if lost.timeout:
                    # A transport that knows nothing can come raises at once: wait out
                    # the probe interval anyway, so that probes do not flood the device.
                    pause = min(deadline, probe_at) - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    self._resync()
                else:
                    problems.append(lost)
                    probe_at = time.monotonic()         # RUN's reply may be lost: probe
                continue
            if tag in frame_tags:
                if reply == p.ERROR:
                    # Not a reason to send RUN again by itself: the error could be a
                    # stray frame's that happens to carry RUN's tag. The probe decides.
                    error = self._error(body, "RUN")
                    if error.code not in RESENT_ERRORS:
                        raise error
                    problems.append(error)
                    probe_at = time.monotonic()
                    continue
                return RunResult(*struct.unpack(
                    p.RUN_REPLY_FORMAT, self._checked(p.RUN, reply, body, p.RUN_REPLY_BYTES)))
            if tag in probe_tags:
                if reply == p.ERROR:
                    error = self._error(body, "GET")
                    if error.code not in RESENT_ERRORS:
                        raise error
                    continue                    # a damaged probe: the next one decides
                return self._ran(struct.unpack("<I", self._checked(p.GET, reply, body, 4))[0],
                                 mark, before, problems)

    def _ran(self, value: int, mark: int, before: int, problems: list):
        """After RUN's reply was lost and ``run_tag`` read ``value``: the run's
        :class:`RunResult` if it ran (``mark``, this RUN's tag), None if it did not
        (``before``, the last RUN's)."""
        if value == before:
            return None
        if value != mark:
            raise LinkError(f"the device's run tag is {value}, neither this RUN's ({mark}) "
                            f"nor the last one's ({before}): another host is running it")
        problems.append(_Lost("RUN's reply was lost, and the run tag shows the run"))
        return RunResult(self.get(REGISTERS["status"]) & 0xFF, self.get(REGISTERS["runs"]),
                         self.get(REGISTERS["cycles"]))
