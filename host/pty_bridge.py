"""A pseudo-terminal in front of any transport: a serial port for a device that is
software or a simulation.

``PtyBridge(transport).port`` is a path such as ``/dev/pts/3`` that the ``serial:``
transport opens like a board's USB UART; the bytes written there go to ``transport``
(the software device model, or the simulated board top) and its replies come back.
The tests drive the serial transport through it, so pyserial, the terminal settings
and the byte stream are the real ones; only the wire is missing (POSIX only).
"""

import os
import select
import threading
import tty

from .link import LinkTimeout

__all__ = ["PtyBridge"]


class PtyBridge:
    """Forward between a pseudo-terminal and ``transport`` until :meth:`close`.

    One thread does both directions, so a transport that is not thread-safe (the
    software device model) is never entered twice at once.
    """

    POLL_SECONDS = 0.002

    def __init__(self, transport):
        self._transport = transport
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)               # no echo, no line editing: bytes as they are
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self.failure = None
        self._thread = threading.Thread(target=self._forward, daemon=True)
        self._thread.start()

    def _forward(self):
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([self._master], [], [], self.POLL_SECONDS)
                if readable:
                    self._transport.send(os.read(self._master, 65536))
                try:
                    reply = self._transport.receive(self.POLL_SECONDS)
                except LinkTimeout:
                    continue
                view = memoryview(reply)
                while view:                   # the terminal's buffer takes a few KB at a time
                    view = view[os.write(self._master, view):]
        except Exception as error:            # kept for the test; the host then times out
            self.failure = error

    def close(self):
        self._stop.set()
        self._thread.join(timeout=10)
        for fd in (self._master, self._slave):
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
