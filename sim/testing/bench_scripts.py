"""The scripts of ``bench/`` as modules, for the tests that call their ``main``, and
the provenance every bench report starts with."""

import datetime
import importlib.util
import subprocess
from pathlib import Path

__all__ = ["BENCH_DIR", "bench_script", "load_bench", "provenance"]

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def bench_script(name: str) -> Path:
    """The path of ``bench/<name>.py``."""
    return BENCH_DIR / f"{name}.py"


def load_bench(name: str):
    """``bench/<name>.py`` imported as a module of its own (``<name>_bench``)."""
    spec = importlib.util.spec_from_file_location(f"{name}_bench", bench_script(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def provenance(kind: str, script: str, argv, sources=("hw", "sim", "host")) -> dict:
    """What a bench report starts with: its figures' kind, when, from which commit (with
    ``(modified)`` if the ``sources`` the figures come from differ from it in the working
    tree) and by which command."""
    root = BENCH_DIR.parent

    def git(*args) -> str:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    head = git("rev-parse", "HEAD")
    modified = git("status", "--porcelain", "--", *sources)
    commit = f"{head}{' (modified)' if modified else ''}" if head else "unknown"
    return {"kind": kind,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": commit, "command": " ".join(["python", f"bench/{script}.py", *argv])}
