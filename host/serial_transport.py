"""The ``serial:PORT[@BAUD]`` transport: a board's host link over a serial port.

The ULX3S board top (``boards/ulx3s.py``) puts the host link on the FTDI UART; the
host sees it as ``/dev/ttyUSB0`` (Linux), ``/dev/cu.usbserial-*`` (macOS) or ``COM3``
(Windows). The bytes are the link's frames (docs/link.md), exactly as the ``sim``
transport carries them, so the :class:`~tritium.host.accelerator.Accelerator` is the
same. pyserial opens the port: 8 data bits, no parity, one stop bit, no flow control.
"""

from .errors import InputError, TritiumError
from .link import LinkTimeout
from .transport import Transport

__all__ = ["DEFAULT_BAUD", "SerialTransport", "parse_serial_spec"]

# The ULX3S board top's rate (boards/ulx3s.py: the FT231X's fastest exact rate).
DEFAULT_BAUD = 3_000_000


def parse_serial_spec(argument) -> tuple:
    """``PORT`` or ``PORT@BAUD`` -> (port, baud)."""
    if not argument:
        raise InputError("transport 'serial' needs a port: serial:PORT or serial:PORT@BAUD "
                         "(e.g. serial:/dev/ttyUSB0@3000000)")
    port, at, baud_text = argument.rpartition("@")
    if not at:
        return argument, DEFAULT_BAUD
    if not port:
        raise InputError(f"serial transport {argument!r}: no port before '@'")
    try:
        baud = int(baud_text)
    except ValueError:
        baud = 0
    if baud <= 0:
        raise InputError(f"serial transport {argument!r}: the baud rate must be a positive "
                         f"integer, not {baud_text!r}")
    return port, baud


class SerialTransport(Transport):
    """The link's bytes over ``port`` at ``baud``; a clear error if the port cannot be
    opened, and :class:`LinkTimeout` naming the port when it does not answer."""

    def __init__(self, port: str, baud: int = DEFAULT_BAUD):
        try:
            import serial
        except ImportError:
            raise TritiumError("the serial transport needs pyserial: pip install pyserial") from None
        self.port, self.baud = port, baud
        try:
            self._serial = serial.Serial(port, baud, timeout=0, write_timeout=10)
        except serial.SerialException as exc:
            raise InputError(f"cannot open serial port {port!r}: {_reason(exc)}") from None
        except ValueError as exc:                     # pyserial: a rate the port refuses
            raise InputError(f"serial port {port!r} at {baud} baud: {exc}") from None

    def send(self, data: bytes) -> None:
        import serial
        try:
            self._serial.write(data)
        except serial.SerialTimeoutException:
            raise LinkTimeout(f"serial port {self.port!r} took no data for 10 s") from None
        except serial.SerialException as exc:
            raise TritiumError(f"serial port {self.port!r}: {_reason(exc)}") from None

    def receive(self, timeout: float) -> bytes:
        import serial
        self._serial.timeout = timeout
        try:
            first = self._serial.read(1)
            if not first:
                raise LinkTimeout(
                    f"no reply on serial port {self.port!r} within {timeout:g} s: is the "
                    f"board programmed with the tritium bitstream, and is it at {self.baud} "
                    f"baud?")
            return first + self._serial.read(self._serial.in_waiting)
        except serial.SerialException as exc:
            raise TritiumError(f"serial port {self.port!r}: {_reason(exc)}") from None

    def close(self) -> None:
        if getattr(self, "_serial", None) is not None:
            self._serial.close()
            self._serial = None


def _reason(exc) -> str:
    """pyserial's message without its repetition of the port name and errno."""
    text = str(exc)
    if "No such file or directory" in text or "[Errno 2]" in text:
        return "no such port"
    if "Permission denied" in text:
        return "permission denied (on Linux, add yourself to the 'dialout' group)"
    return text.splitlines()[0] if text else type(exc).__name__
