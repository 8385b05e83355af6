"""The ``sim`` transport: the host link of the generated Verilog, simulated cycle by cycle.

:class:`SimTransport` builds the accelerator's top for a config with Verilator (once:
the build is cached per design and gateware version), starts the simulation in a
background thread with ``tritium.sim.bridge`` as its cocotb test, and exchanges the
link's bytes with it over a local TCP socket: the same frames a board would get.
"""

import hashlib
import os
import socket
import threading
from pathlib import Path

from .errors import TritiumError
from .link import LinkTimeout

__all__ = ["SimTransport", "simulation_cache_dir"]

CONNECT_SECONDS = 120


def _gateware_digest() -> str:
    """A digest of the gateware sources, so a changed design is rebuilt."""
    from tritium import hw, sim
    digest = hashlib.sha256()
    for package in (hw, sim):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def simulation_cache_dir(config) -> Path:
    """Where the simulation of ``config`` is built (``$TRITIUM_CACHE`` or ~/.cache)."""
    base = Path(os.environ.get("TRITIUM_CACHE", Path.home() / ".cache" / "tritium"))
    return base / "sim" / f"{config.name}-{config.design_id:08x}-{_gateware_digest()}"


class SimTransport:
    """Bytes to and from the simulated top; see the module docstring.

    ``log`` receives the simulator's output (default: a file in the build directory).
    """

    def __init__(self, config, build_dir=None, log=None):
        from tritium.hw.top import Top
        from tritium.sim.cosim import build_simulation
        self.build_dir = Path(build_dir) if build_dir else simulation_cache_dir(config)
        self.toplevel = f"tritium_{config.name.replace('-', '_')}"
        self._runner = build_simulation(lambda: Top(config), toplevel=self.toplevel,
                                        build_dir=self.build_dir, reuse=True)
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(CONNECT_SECONDS)
        self._failure = None
        self._thread = threading.Thread(target=self._simulate, daemon=True,
                                        args=(log or self.build_dir / "simulation.log",))
        self._thread.start()
        try:
            self._socket, _ = self._server.accept()
        except socket.timeout:
            raise TritiumError(f"the simulation did not start within {CONNECT_SECONDS} s "
                               f"(log: {self.build_dir / 'simulation.log'})") from None
        finally:
            self._server.close()

    def _simulate(self, log):
        try:
            self._runner.test(test_module="tritium.sim.bridge", hdl_toplevel=self.toplevel,
                              build_dir=self.build_dir, test_dir=self.build_dir,
                              extra_env={"TRITIUM_BRIDGE_PORT": str(self._server.getsockname()[1])},
                              log_file=log)
        except BaseException as error:                # reported by the next receive()
            self._failure = error

    def send(self, data: bytes):
        self._socket.sendall(data)

    def receive(self, timeout: float) -> bytes:
        self._socket.settimeout(timeout)
        try:
            data = self._socket.recv(65536)
        except socket.timeout:
            raise LinkTimeout(f"the simulation sent nothing for {timeout} s") from None
        if not data:
            raise TritiumError(f"the simulation ended unexpectedly: {self._failure or 'no reply'}")
        return data

    def close(self):
        if getattr(self, "_socket", None):
            self._socket.close()
            self._socket = None
            self._thread.join(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
