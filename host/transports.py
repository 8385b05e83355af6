"""Opening a transport by name: the registry of the host's device backends.

:func:`open_transport` makes one from a spec string, ``name`` or ``name:argument``
(``model``: the software device, ``sim``, ``serial:PORT[@BAUD]``, ``zynq[:ADDRESS]`` on
the KV260's ARM cores; others register themselves in :data:`TRANSPORTS`). The interface
they implement is :mod:`tritium.host.transport`; each backend is imported only when it
is opened.
"""

import dataclasses
import inspect

from tritium.hw.config import AcceleratorConfig
from .errors import InputError
from .transport import Transport

__all__ = ["TRANSPORTS", "TransportEntry", "register_transport", "transport_entry",
           "open_transport"]


@dataclasses.dataclass(frozen=True)
class TransportEntry:
    """A registered transport: how to open it and how to tell a person about it."""
    factory: object         # factory(argument: str or None, config[, progress]) -> Transport
    usage: str              # the spec as a person types it: "serial:PORT[@BAUD]"
    description: str        # what it reaches, for --help and the demo's banner
    default_config: str = "tiny"    # the accelerator preset its device is generated for


TRANSPORTS = {}
"""Transport name -> :class:`TransportEntry`."""


def register_transport(name: str, factory, usage: str = None, description: str = "",
                       default_config: str = "tiny") -> None:
    """Make ``open_transport(name)`` and ``open_transport(name + ":" + argument)`` work."""
    TRANSPORTS[name] = TransportEntry(factory, usage or name, description, default_config)


def transport_entry(spec: str) -> TransportEntry:
    """The registered transport a spec names; :class:`InputError` if none."""
    name = spec.partition(":")[0]
    if name not in TRANSPORTS:
        raise InputError(f"unknown transport {spec!r}; known transports: "
                         f"{', '.join(sorted(TRANSPORTS))}")
    return TRANSPORTS[name]


def _device_model(argument, config):
    if argument is not None:
        raise InputError(f"transport 'model' takes no argument, not {argument!r}")
    from .device_model import DeviceModelTransport
    return DeviceModelTransport(config)


register_transport("model", _device_model, description="the software device, through the link")


def _sim(argument, config, progress=None):
    if argument is not None:
        raise InputError(f"transport 'sim' takes no argument, not {argument!r}")
    from .sim_transport import SimTransport, check_build_tools, simulation_is_built
    if not simulation_is_built(config):             # cocotb and Verilator: loaded on use
        check_build_tools()
    return SimTransport(config, progress=progress)


register_transport("sim", _sim, description="the cycle-accurate simulation of the generated "
                   "Verilog on Verilator, through the link")


def _serial(argument, config):
    from .serial_transport import SerialTransport, parse_serial_spec
    return SerialTransport(*parse_serial_spec(argument))


register_transport("serial", _serial, usage="serial:PORT[@BAUD]",
                   description="a board on its UART: the ULX3S", default_config="ulx3s")


def _zynq(argument, config):
    from .zynq_transport import open_zynq
    return open_zynq(argument, config)


register_transport("zynq", _zynq, usage="zynq[:ADDRESS]",
                   description="the KV260, from its ARM cores; ADDRESS: a reserved buffer, "
                               "else PYNQ allocates one", default_config="kv260")


def open_transport(spec: str, config: AcceleratorConfig, progress=None) -> Transport:
    """Open the transport ``spec`` (``name`` or ``name:argument``) for a design.

    ``progress(stage)``, for a transport whose factory takes it (``sim``), hears what a
    slow start is doing (the simulator's build); the others ignore it."""
    name, colon, argument = spec.partition(":")
    factory = transport_entry(spec).factory
    if progress is not None and "progress" in inspect.signature(factory).parameters:
        return factory(argument if colon else None, config, progress=progress)
    return factory(argument if colon else None, config)
