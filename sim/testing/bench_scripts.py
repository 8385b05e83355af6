"""The scripts of ``bench/`` as modules, for the tests that call their ``main``."""

import importlib.util
from pathlib import Path

__all__ = ["BENCH_DIR", "bench_script", "load_bench"]

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
