"""UART for the board host link (docs/uart.md): 8N1 bytes as streams, LSB first."""

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UARTReceiver", "UARTTransmitter", "uart_divisor"]

MIN_DIVISOR = 4
MAX_BAUD_ERROR = 0.02


def _check_divisor(owner: str, divisor) -> int:
    # Below 4 cycles per bit the receiver's mid-bit sample is too close to the edges for the
    # two-cycle synchronizer and a 2% rate error.
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"{owner} divisor must be an integer >= {MIN_DIVISOR}, not {divisor!r}")
    return divisor


def uart_divisor(clock_hz: int, baud: int) -> int:
    """Return the clock cycles per bit for ``baud`` at ``clock_hz``, rounded to the nearest.

    Raises
    ------
    ValueError
        If the divisor is below 4, or the baud rate it gives is more than 2% off ``baud``
        (8N1 tolerates about 5% between both ends together; half is left for the other end).
    """
    if clock_hz <= 0 or baud <= 0:
        raise ValueError(f"UART clock and baud must be positive, not {clock_hz!r} Hz and "
                         f"{baud!r} baud")
    divisor = (clock_hz + baud // 2) // baud
    error = abs(clock_hz / divisor - baud) / baud if divisor else float("inf")
    if divisor < MIN_DIVISOR or error > MAX_BAUD_ERROR:
        raise ValueError(f"UART clock {clock_hz} Hz cannot make {baud} baud: divisor {divisor} "
                         f"gives a {error:.2%} error (need divisor >= {MIN_DIVISOR} and error "
                         f"<= {MAX_BAUD_ERROR:.0%})")
    return divisor


class UARTReceiver(wiring.Component):
    """Receive 8N1 bytes from a serial line, LSB first, ``divisor`` cycles per bit.

    ``rx`` goes through a two-flip-flop synchronizer. A start bit begins at a falling edge
    and must still be low at mid-bit (shorter pulses are ignored); each data bit and the
    stop bit are sampled at mid-bit. The receiver is ready for the next start bit from the
    middle of the stop bit on, so a sender up to a few percent fast is followed.

    A received byte is held in a one-deep output register, so the next byte can arrive while
    it waits to be taken.

    Latency
    -------
    ``data.valid`` rises ``divisor // 2 + 3`` cycles after the stop bit begins on ``rx``
    (:attr:`latency`): 2 for the synchronizer, ``divisor // 2`` to mid-bit, 1 for the output
    register.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4 (see :func:`uart_divisor`).

    Members
    -------
    rx : ``In(1, init=1)``
        The serial line, idle high; asynchronous to the clock.
    data : ``Out(stream.Signature(8))``
        Received bytes.
    overrun : ``Out(1)``
        Sticky: a byte was complete while the previous one was not taken by ``data``; the
        new byte was dropped, the waiting one is kept.
    framing_error : ``Out(1)``
        Sticky: a stop bit was low; that byte was dropped.
    """

    rx: In(1, init=1)
    data: Out(stream.Signature(8))
    overrun: Out(1)
    framing_error: Out(1)

    def __init__(self, divisor: int):
        self._divisor = _check_divisor("UARTReceiver", divisor)
        super().__init__()

    @property
    def divisor(self) -> int:
        """Clock cycles per bit."""
        return self._divisor

    @property
    def latency(self) -> int:
        """Cycles from the start of the stop bit on ``rx`` to ``data.valid``."""
        return self._divisor // 2 + 3

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor

        # Two flip-flops for metastability; a third keeps the previous sample to see the
        # falling edge. All start high (idle), so reset does not look like a start bit.
        rx_meta, rx_sync, rx_prev = (Signal(init=1, name=name)
                                     for name in ("rx_meta", "rx_sync", "rx_prev"))
        m.d.sync += [rx_meta.eq(self.rx), rx_sync.eq(rx_meta), rx_prev.eq(rx_sync)]

        # Counts down to the next mid-bit sample; free-running modulo the divisor, and
        # realigned to half a bit by each start edge.
        timer = Signal(range(divisor))
        sample = Signal()
        m.d.comb += sample.eq(timer == 0)
        m.d.sync += timer.eq(timer - 1)
        with m.If(sample):
            m.d.sync += timer.eq(divisor - 1)

        shift = Signal(8)                       # data bits, the latest entering at the MSB
        bit_count = Signal(range(8))
        received = Signal()                     # strobe: a byte with a good stop bit
        with m.FSM():
            with m.State("IDLE"):
                with m.If(rx_prev & ~rx_sync):
                    m.d.sync += timer.eq(divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(sample):
                    m.d.sync += bit_count.eq(0)
                    # High again at mid-bit: a glitch, not a start bit.
                    with m.If(rx_sync):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(sample):
                    m.d.sync += [shift.eq(Cat(shift[1:], rx_sync)), bit_count.eq(bit_count + 1)]
                    with m.If(bit_count == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(sample):
                    m.d.comb += received.eq(rx_sync)
                    with m.If(~rx_sync):
                        m.d.sync += self.framing_error.eq(1)
                    m.next = "IDLE"

        # One-deep output register; a byte completed while it is still full is dropped.
        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        with m.If(received):
            with m.If(self.data.valid & ~self.data.ready):
                m.d.sync += self.overrun.eq(1)
            with m.Else():
                m.d.sync += [self.data.payload.eq(shift), self.data.valid.eq(1)]
        return m


class UARTTransmitter(wiring.Component):
    """Send each byte as 8N1 on a serial line, LSB first, ``divisor`` cycles per bit.

    A byte is taken while the line is idle, or in the last cycle of the previous byte's
    stop bit, so back-to-back bytes go out with no gap. Its start bit begins the cycle after
    it is taken. ``data.ready`` does not depend on ``data.valid``.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4 (see :func:`uart_divisor`).

    Members
    -------
    data : ``In(stream.Signature(8))``
        Bytes to send.
    tx : ``Out(1, init=1)``
        The serial line, idle high; registered.
    """

    data: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        self._divisor = _check_divisor("UARTTransmitter", divisor)
        super().__init__()

    @property
    def divisor(self) -> int:
        """Clock cycles per bit."""
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor
        timer = Signal(range(divisor))          # cycles left in the current bit, minus one
        bits_left = Signal(range(10))           # data and stop bits not yet on the line
        shift = Signal(9)                       # those bits, the next one at the LSB

        # Idle is "stop bit over" (the line stays high), so one test covers both cases.
        m.d.comb += self.data.ready.eq((timer == 0) & (bits_left == 0))
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [
                self.tx   .eq(0),
                shift     .eq(Cat(self.data.payload, 1)),
                bits_left .eq(9),
                timer     .eq(divisor - 1),
            ]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Elif(bits_left != 0):
            m.d.sync += [
                self.tx   .eq(shift[0]),
                shift     .eq(shift >> 1),
                bits_left .eq(bits_left - 1),
                timer     .eq(divisor - 1),
            ]
        return m
