"""The ``sim`` transport: the host link of the generated Verilog, simulated cycle by cycle.

:class:`SimTransport` builds the accelerator's top for a config with Verilator (once:
the build is cached per design and gateware version), starts the simulation in a
background thread with ``tritium.sim.backend.bridge`` as its cocotb test, and exchanges the
link's bytes with it over a local TCP socket: the same frames a board would get.
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .errors import InputError, TritiumError
from .link import LinkTimeout
from .transport import Transport

__all__ = ["SimTransport", "BoardSimTransport", "simulation_cache_dir", "simulation_is_built",
           "check_build_tools"]

CONNECT_SECONDS = 120
# C++ optimisation of the simulator. For the tiny top, -O2 builds in about 100 s (-O0:
# 70 s) and simulates 18 times faster than -O0 (docs/performance.md).
SIM_OPTIMIZE = os.environ.get("TRITIUM_SIM_OPTIMIZE", "-O2")


def _gateware_digest(extra_sources=()) -> str:
    """A digest of what the simulator is built from (``hw/``, the simulated tops in
    ``sim/backend/harness.py``, the build recipe in ``sim/backend/cosim.py``, and the
    ``extra_sources`` a harness names, such as a board core's module), so a changed
    design is rebuilt and an unrelated change is not."""
    from tritium import hw, sim
    digest = hashlib.sha256()
    sources = (sorted(Path(hw.__file__).parent.rglob("*.py"))
               + [Path(sim.__file__).parent / "backend" / name
                  for name in ("harness.py", "cosim.py")]
               + sorted(Path(path) for path in extra_sources))
    for path in sources:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def simulation_cache_dir(config, variant: str = None, sources=()) -> Path:
    """Where the simulation of ``config`` (with a harness ``variant`` other than the
    plain top, built also from the files ``sources``) is built: ``$TRITIUM_CACHE`` or
    ~/.cache."""
    base = Path(os.environ.get("TRITIUM_CACHE", Path.home() / ".cache" / "tritium"))
    name = f"{config.name}-{variant}" if variant else config.name
    digest = _gateware_digest(sources)
    return base / "sim" / f"{name}-{config.design_id:08x}-{digest}{SIM_OPTIMIZE}"


def simulation_is_built(config, variant: str = None) -> bool:
    """Whether that simulator is already built (the next start is quick)."""
    return (simulation_cache_dir(config, variant) / f"{_toplevel(config)}.built").exists()


def check_build_tools() -> None:
    """Raise :class:`TritiumError`, naming what is missing, unless a C++ compiler
    (``$CXX``, else ``c++``, ``g++`` or ``clang++``) and ``make`` are on the PATH:
    Verilator's build needs both, so check before starting it."""
    missing = []
    cxx = os.environ.get("CXX")
    if cxx:
        compiler = (cxx.split() or [""])[0]
        if not shutil.which(compiler):
            missing.append(f"the C++ compiler CXX={cxx!r}")
    elif not any(shutil.which(name) for name in ("c++", "g++", "clang++")):
        missing.append("a C++ compiler (c++, g++ or clang++)")
    if not shutil.which("make"):
        missing.append("make")
    if missing:
        raise TritiumError(f"the sim backend builds the simulator with Verilator, but "
                           f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                           f"not on the PATH; install them or use another backend")


def _toplevel(config) -> str:
    return f"tritium_{config.name.replace('-', '_')}"


class _BuildWatcher:
    """Reports ``"compiling with Verilator"`` once the build writes the Verilog source
    (``sim/backend/cosim.py`` compiles right after writing it)."""

    def __init__(self, source: Path, report):
        self._source, self._report = source, report
        self._done = threading.Event()
        self._thread = None

    def start(self):
        self._since = time.time()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self):
        while not self._done.wait(0.2):
            try:
                written = self._source.stat().st_mtime >= self._since - 1
            except OSError:
                written = False
            if written:
                self._report("compiling with Verilator")
                return

    def stop(self):
        self._done.set()
        if self._thread is not None:
            self._thread.join()


class SimTransport(Transport):
    """Bytes to and from the simulated top; see the module docstring.

    ``harness`` makes the component to simulate (default: ``SimTop(config)``, the top
    with its link fed by chunks); it needs the same ``rx_chunks``/``tx`` ports, such as
    a :class:`~tritium.sim.backend.harness.UartSimTop` around a board core, and a ``variant``
    name for its cache directory; ``harness_sources`` are the files it is built from
    beyond ``hw/`` and ``sim/backend`` (a board core's module), so that a change to them
    rebuilds it. ``log`` receives the simulator's output (default: a
    file in the build directory). ``backdoor`` is the number of memory ports of a
    :class:`~tritium.sim.backend.harness.BoardSimTop` harness, whose backdoor the transport
    then opens (0: none; :class:`BoardSimTransport` uses it). ``progress(stage)``, if
    given, hears the stages of a first build, ``"generating Verilog"`` and ``"compiling
    with Verilator"`` (a cached build has neither), then ``"starting the simulation"``;
    it may be called from another thread.
    """

    def __init__(self, config, build_dir=None, log=None, harness=None, variant=None,
                 harness_sources=(), backdoor: int = 0, progress=None):
        from tritium.sim.backend.cosim import build_simulation, output_to_file
        from tritium.sim.backend.harness import SimTop
        if (harness is None) != (variant is None):
            raise ValueError("a simulation harness needs a variant name, and only it")
        self.build_dir = Path(build_dir) if build_dir else simulation_cache_dir(config, variant, harness_sources)
        self.toplevel = _toplevel(config)
        self.build_dir.mkdir(parents=True, exist_ok=True)
        build_log = self.build_dir / "build.log"
        report = progress or (lambda stage: None)
        make = harness or (lambda: SimTop(config))
        watcher = _BuildWatcher(self.build_dir / f"{self.toplevel}.v", report)

        def component():                    # called only when the build is not cached
            report("generating Verilog")
            watcher.start()
            return make()

        try:
            with output_to_file(build_log):
                self._runner = build_simulation(component, toplevel=self.toplevel,
                                                build_dir=self.build_dir, reuse=True,
                                                optimize=SIM_OPTIMIZE)
        except (subprocess.CalledProcessError, SystemExit):
            raise TritiumError(f"building the simulator with Verilator failed "
                               f"(log: {build_log})") from None
        finally:
            watcher.stop()
        report("starting the simulation")
        self._word_bytes = config.data_width // 8
        self._backdoor, self._control, self._image_dir = backdoor, None, None
        if backdoor:
            self._image_dir = Path(tempfile.mkdtemp(prefix="tritium-image-"))
        self._server = socket.create_server(("127.0.0.1", 0))
        self._failure = None
        self._thread = threading.Thread(target=self._simulate, daemon=True,
                                        args=(log or self.build_dir / "simulation.log",))
        self._thread.start()
        self._socket = None
        try:
            self._socket = self._accept()
            if backdoor:
                self._control = self._accept().makefile("rwb")
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
        env = {"TRITIUM_BRIDGE_PORT": str(self._server.getsockname()[1])}
        plusargs = []
        if self._backdoor:
            from tritium.sim.backend.backdoor import image_plusarg
            env["TRITIUM_BACKDOOR"] = str(self._backdoor)
            plusargs = [image_plusarg(self._image_dir / "image.hex")]
        try:
            self._runner.test(test_module="tritium.sim.backend.bridge", hdl_toplevel=self.toplevel,
                              hdl_toplevel_lang="verilog",
                              build_dir=self.build_dir, test_dir=self.build_dir,
                              extra_env=env, plusargs=plusargs, log_file=log)
        except BaseException as error:                # reported by the next receive()
            self._failure = error

    def _request(self, line: str) -> dict:
        """One backdoor request and its answer (``sim/backend/bridge.py``)."""
        self._control.write(line.encode() + b"\n")
        self._control.flush()
        answer = self._control.readline()
        if not answer:
            raise TritiumError(f"the simulation ended unexpectedly: {self._failure or 'no reply'}")
        return json.loads(answer)

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
        if getattr(self, "_control", None):
            self._control.close()
            self._control = None
        if getattr(self, "_image_dir", None):
            shutil.rmtree(self._image_dir, ignore_errors=True)
            self._image_dir = None
        if getattr(self, "_socket", None):
            self._socket.close()
            self._socket = None
            self._thread.join(timeout=60)


class BoardSimTransport(SimTransport):
    """The ``sim`` transport on a board's memory: the top's memory port on the first
    ``config.memory_ports`` ports of a :class:`~tritium.hw.memory.BoardMemory` that
    follows memory model ``model`` (:data:`~tritium.hw.memory_model.MEMORY_MODELS`),
    striped across them when there are several, with a backdoor to load images.
    """

    def __init__(self, config, model, build_dir=None, log=None, progress=None):
        from tritium.sim.backend.harness import BoardSimTop
        ports = config.memory_ports
        if ports > len(model.ports):
            raise InputError(f"accelerator {config.name!r} reads through {ports} memory "
                             f"ports; memory model {model.name!r} has {len(model.ports)}")
        super().__init__(config, build_dir=build_dir, log=log,
                         harness=lambda: BoardSimTop(config, model),
                         variant=f"board-{model.name}-{ports}", backdoor=ports,
                         progress=progress)
        self.port_names = tuple(port.name for port in model.ports[:ports])

    def load_image(self, image) -> None:
        """Store ``image`` (``(word address, bytes)`` pairs) in the simulated board memory
        through its backdoor, in one clock cycle of the simulation."""
        from tritium.sim.backend.backdoor import write_memory_image
        write_memory_image(self._image_dir / "image.hex", image, self._word_bytes)
        self._request("load")

    def memory_counters(self) -> dict:
        """Words read and written through each memory port since the simulation started,
        by port name: ``{"HP0": {"read_words": n, "written_words": n}, ...}``."""
        words = self._request("counters")
        return {name: {kind: words[kind][i] for kind in ("read_words", "written_words")}
                for i, name in enumerate(self.port_names)}
