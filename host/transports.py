"""Byte transports between the host and a device, and how to open one by name.

A transport moves the link's bytes (docs/link.md), so the driver
(:class:`~tritium.host.accelerator.Accelerator`) is the same over every backend:

- ``send(data)``: hand bytes to the device;
- ``receive(timeout) -> bytes``: what has arrived, at least one byte, or raise
  :class:`~tritium.host.link.LinkTimeout` after ``timeout`` seconds;
- ``close()``;
- optionally ``load_image(image)``: put a compiled model's memory image
  (``CompiledModel.image``) into the device's memory directly; where a transport has
  it, :meth:`Accelerator.load` uses it instead of WRITE frames.

:func:`open_transport` makes one from a spec string, ``name`` or ``name:argument``
(``model``: the software device, ``sim``, ``serial:PORT[@BAUD]``, ``zynq[:ADDRESS]`` on
the KV260's ARM cores; others register themselves in :data:`TRANSPORTS`).
"""

import inspect

from tritium.hw.config import AcceleratorConfig
from .device_model import DeviceModel
from .errors import InputError
from .link import LinkTimeout

__all__ = ["Closeable", "Transport", "DeviceModelTransport", "TRANSPORTS",
           "register_transport", "open_transport"]


class Closeable:
    """Something to ``close()``, usable as a context manager that closes it."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class Transport(Closeable):
    """The byte-stream interface every backend implements; usable as a context manager."""

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def receive(self, timeout: float) -> bytes:
        raise NotImplementedError


class DeviceModelTransport(Transport):
    """The software device: a :class:`DeviceModel` in the host process (transport
    ``model``); it answers as soon as bytes arrive. (Not the golden model: that is the
    host backend ``golden``, which speaks no link.)

    Attributes
    ----------
    device : DeviceModel
    """

    def __init__(self, config: AcceleratorConfig):
        self.device = DeviceModel(config)
        self._pending = b""

    def send(self, data: bytes) -> None:
        self._pending += self.device.receive(bytes(data))

    def receive(self, timeout: float) -> bytes:
        # The model replies synchronously in send(), so nothing can arrive by waiting.
        if not self._pending:
            raise LinkTimeout("the software device has no reply pending")
        data, self._pending = self._pending, b""
        return data


TRANSPORTS = {}
"""Transport name -> ``factory(argument: str or None, config) -> Transport``."""


def register_transport(name: str, factory) -> None:
    """Make ``open_transport(name)`` and ``open_transport(name + ":" + argument)`` work."""
    TRANSPORTS[name] = factory


def _device_model(argument, config):
    if argument is not None:
        raise InputError(f"transport 'model' takes no argument, not {argument!r}")
    return DeviceModelTransport(config)


register_transport("model", _device_model)

def _sim(argument, config, progress=None):
    if argument is not None:
        raise InputError(f"transport 'sim' takes no argument, not {argument!r}")
    from .sim_transport import SimTransport, check_build_tools, simulation_is_built
    if not simulation_is_built(config):             # cocotb and Verilator: loaded on use
        check_build_tools()
    return SimTransport(config, progress=progress)


register_transport("sim", _sim)


def _serial(argument, config):
    from .serial_transport import SerialTransport, parse_serial_spec
    return SerialTransport(*parse_serial_spec(argument))


register_transport("serial", _serial)


def _zynq(argument, config):
    from .zynq_transport import open_zynq          # it imports this module
    return open_zynq(argument, config)


register_transport("zynq", _zynq)


def open_transport(spec: str, config: AcceleratorConfig, progress=None) -> Transport:
    """Open the transport ``spec`` (``name`` or ``name:argument``) for a design.

    ``progress(stage)``, for a transport whose factory takes it (``sim``), hears what a
    slow start is doing (the simulator's build); the others ignore it."""
    name, colon, argument = spec.partition(":")
    if name not in TRANSPORTS:
        raise InputError(f"unknown transport {spec!r}; known transports: "
                         f"{', '.join(sorted(TRANSPORTS))}")
    factory = TRANSPORTS[name]
    if progress is not None and "progress" in inspect.signature(factory).parameters:
        return factory(argument if colon else None, config, progress=progress)
    return factory(argument if colon else None, config)
