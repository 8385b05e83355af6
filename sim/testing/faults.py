"""Fault injection on the host link: a transport wrapper that damages frames both ways.

:class:`FaultyTransport` wraps any :class:`~tritium.host.transport.Transport` and, from
a seeded :class:`random.Random`, damages some of the frames that pass through it, in
both directions (host to device in ``send``, device to host in ``receive``): a noise
burst, a dropped frame, a duplicated frame, a truncated frame, a flipped bit, or a
trickle of bytes with no frame end. Every fault is logged in :attr:`FaultyTransport.log`
as ``(direction, kind)``, so a test can count what it injected and what the host
recovered from (docs/link.md, "Recovery").
"""

import random
import time

from tritium.host.link import LinkTimeout
from tritium.host.transport import Transport
from tritium.hw.link.protocol import END, ESC

__all__ = ["FAULTS", "FaultyTransport", "Silent", "watch_deadlines"]

FAULTS = ("noise", "drop", "duplicate", "truncate", "bitflip", "trickle")
TRICKLE_STEP = 0.004            # seconds between the bytes of a trickle


class FaultyTransport(Transport):
    """``inner`` with faults: each frame is damaged with probability ``rate`` in the
    directions ``directions`` (``"to_device"``, ``"to_host"``), by one of ``kinds``.

    A trickle towards the host replaces a reply by bytes without a frame end, one
    every :data:`TRICKLE_STEP` seconds, for ``trickle`` seconds (drawn from that
    (low, high) range); towards the device it sends the frame without its END and
    with more bytes after it. The replies held back meanwhile come after it, so the
    trickle's bytes damage the first of them.
    """

    def __init__(self, inner, rng: random.Random, rate: float = 0.05, kinds=FAULTS,
                 directions=("to_device", "to_host"), trickle=(0.02, 0.2)):
        unknown = set(kinds) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}")
        self.inner, self.rng, self.rate = inner, rng, rate
        self.kinds, self.directions, self.trickle = tuple(kinds), tuple(directions), trickle
        self.log = []                   # (direction, kind) of every fault injected
        self.enabled = True
        self._incoming = bytearray()    # device bytes not yet cut into frames
        self._outgoing = bytearray()    # device bytes (after faults) for the host
        self._trickle_until = None

    def pause(self) -> None:
        """Inject no more faults (a trickle under way ends) until :meth:`resume`."""
        self.enabled, self._trickle_until = False, None

    def resume(self) -> None:
        self.enabled = True

    def __getattr__(self, name):        # load_image and the like: the inner transport's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- faults -----------------------------------------------------------------------

    def _fault(self, direction: str):
        if not self.enabled or direction not in self.directions or self.rng.random() >= self.rate:
            return None
        kind = self.rng.choice(self.kinds)
        self.log.append((direction, kind))
        return kind

    def _noise(self) -> bytes:
        """A burst of 1-16 random bytes, with END and ESC among them now and then."""
        pool = list(range(256)) + [END, ESC] * 16
        return bytes(self.rng.choice(pool) for _ in range(self.rng.randint(1, 16)))

    def _damage(self, frame: bytes, kind: str) -> bytes:
        rng = self.rng
        if kind == "noise":
            at = rng.randrange(len(frame) + 1)
            return frame[:at] + self._noise() + frame[at:]
        if kind == "drop":
            return b""
        if kind == "duplicate":
            return frame + frame
        if kind == "truncate":
            return frame[:rng.randrange(max(1, len(frame) - 1))]
        if kind == "bitflip":
            data = bytearray(frame)
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            return bytes(data)
        raise ValueError(kind)

    def _garbage(self, count: int) -> bytes:
        return bytes(self.rng.choice([b for b in range(256) if b != END]) for _ in range(count))

    # -- the transport ----------------------------------------------------------------

    def send(self, data: bytes) -> None:
        kind = self._fault("to_device")
        if kind is None:
            self.inner.send(data)
        elif kind == "trickle":
            self.inner.send(bytes(data).rstrip(bytes([END])) + self._garbage(self.rng.randint(1, 32)))
        elif kind != "drop":
            self.inner.send(self._damage(bytes(data), kind))

    def receive(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            if self._trickle_until is not None:
                now = time.monotonic()
                if now < self._trickle_until:
                    if deadline - now < TRICKLE_STEP:
                        time.sleep(max(0.0, deadline - now))
                        raise LinkTimeout("the faulty transport trickled no byte in time")
                    time.sleep(TRICKLE_STEP)
                    return self._garbage(1)
                self._trickle_until = None
            if self._outgoing:
                data, self._outgoing = bytes(self._outgoing), bytearray()
                return data
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinkTimeout("the faulty transport has nothing in time")
            self._incoming += self.inner.receive(remaining)
            while END in self._incoming:
                end = self._incoming.index(END) + 1
                frame = bytes(self._incoming[:end])
                del self._incoming[:end]
                kind = self._fault("to_host")
                if kind == "trickle":
                    self._trickle_until = time.monotonic() + self.rng.uniform(*self.trickle)
                elif kind is None:
                    self._outgoing += frame
                else:
                    self._outgoing += self._damage(frame, kind)

    def close(self) -> None:
        self.inner.close()


def watch_deadlines(link, figures: dict, slack: float = 5.0) -> None:
    """Make ``link``'s (a :class:`~tritium.host.link.LinkClient`) ``request`` and
    ``run`` check that every call ends, returning or raising, within the bound that
    its deadlines give (plus ``slack`` seconds of scheduling), and record the longest
    call in ``figures["max_request_seconds"]`` and the longest failing one in
    ``figures["max_report_seconds"]``.

    A request is sent at most ``attempts`` times, each with its deadline; RUN adds a
    GET of ``runs`` before and after it, and after each sending's deadline a GET of
    ``runs`` and one of ``status``."""
    attempts, short = link.attempts, link.short_timeout

    def bound(name, args, kwargs):
        if name == "request":
            timeout = kwargs.get("timeout") or (args[2] if len(args) > 2 else None)
            return attempts * (timeout or link.timeout_of(args[0]))
        timeout = kwargs.get("timeout") or (args[1] if len(args) > 1 else None) or link.timeout
        return 2 * attempts * short + attempts * (timeout + 2 * attempts * short)

    for name in ("request", "run"):
        method = getattr(link, name)

        def call(*args, _method=method, _name=name, **kwargs):
            started = time.monotonic()
            limit = bound(_name, args, kwargs) + slack
            failed = True
            try:
                result = _method(*args, **kwargs)
                failed = False
                return result
            finally:
                elapsed = time.monotonic() - started
                figures["max_request_seconds"] = max(figures.get("max_request_seconds", 0.0),
                                                     elapsed)
                if failed:
                    figures["max_report_seconds"] = max(figures.get("max_report_seconds", 0.0),
                                                        elapsed)
                assert elapsed < limit, f"{_name} took {elapsed:.3f} s, beyond {limit:.3f} s"
        setattr(link, name, call)


class Silent(Transport):
    """A device that takes bytes and never answers (a board without the bitstream)."""

    def send(self, data):
        pass

    def receive(self, timeout):
        time.sleep(timeout)
        raise LinkTimeout("silent")
