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
# C++ optimisation of the simulator: build time dominates a demo's first run and CI.
SIM_OPTIMIZE = os.environ.get("TRITIUM_SIM_OPTIMIZE", "-O0")


def _gateware_digest() -> str:
    """A digest of what the simulator is built from (``hw/`` and ``sim/harness.py``), so
    a changed design is rebuilt."""
    from tritium import hw, sim
    digest = hashlib.sha256()
    root = Path(hw.__file__).parent
    sources = sorted(root.rglob("*.py")) + [Path(sim.__file__).parent / "harness.py"]
    for path in sources:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def simulation_cache_dir(config) -> Path:
    """Where the simulation of ``config`` is built (``$TRITIUM_CACHE`` or ~/.cache)."""
    base = Path(os.environ.get("TRITIUM_CACHE", Path.home() / ".cache" / "tritium"))
    return base / "sim" / (f"{config.name}-{config.design_id:08x}-{_gateware_digest()}"
                           f"{SIM_OPTIMIZE}")


class SimTransport:
    """Bytes to and from the simulated top; see the module docstring.

    ``log`` receives the simulator's output (default: a file in the build directory).
    """

    def __init__(self, config, build_dir=None, log=None):
        from tritium.sim.cosim import build_simulation
        from tritium.sim.harness import SimTop
        self.build_dir = Path(build_dir) if build_dir else simulation_cache_dir(config)
        self.toplevel = f"tritium_{config.name.replace('-', '_')}"
        self._runner = build_simulation(lambda: SimTop(config), toplevel=self.toplevel,
                                        build_dir=self.build_dir, reuse=True,
                                        optimize=SIM_OPTIMIZE)
        self._server = socket.create_server(("127.0.0.1", 0))
        self._failure = None
        self._thread = threading.Thread(target=self._simulate, daemon=True,
                                        args=(log or self.build_dir / "simulation.log",))
        self._thread.start()
        self._socket = None
        try:
            self._socket = self._accept()
        finally:
            self._server.close()

    def _accept(self):
        """The simulation's connection; a clear error if it ends or hangs instead."""
        self._server.settimeout(1.0)
        for _ in range(CONNECT_SECONDS):
            try:
                return self._server.accept()[0]
            except socket.timeout:
                if not self._thread.is_alive():
                    break
        reason = (f"it ended ({self._failure!r})" if not self._thread.is_alive()
                  else f"it did not connect within {CONNECT_SECONDS} s")
        raise TritiumError(f"the simulation did not start: {reason} "
                           f"(log: {self.build_dir / 'simulation.log'})")

    def _simulate(self, log):
        try:
            self._runner.test(test_module="tritium.sim.bridge", hdl_toplevel=self.toplevel,
                              hdl_toplevel_lang="verilog",
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
