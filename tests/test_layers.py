"""The import rules between the layers (docs/architecture.md), checked from the source.

Every ``import`` and ``from ... import`` of every module, relative ones resolved, at any
depth of the file (imports inside functions count too), against what its layer may use:

- the **contracts** (plain Python every layer shares: configs, numerics, memory models,
  ISA, link protocol) import the standard library and each other only;
- the **gateware** (``hw/``) imports Amaranth and the contracts, never NumPy, cocotb,
  the golden model, the host or the boards;
- the **golden model and the float reference** (``sim/golden``, ``sim/reference.py``)
  import NumPy and the contracts, never gateware, so the tests compare two independent
  descriptions of the hardware;
- nothing in ``sim/`` but the test drivers imports ``host/``; ``boards/`` and ``host/``
  never import each other;
- the test and bench drivers (``sim/testing``) are imported by no product code (they
  may use any layer: a fault-injecting wrapper of the host's transports, for example);
- the CLI (``cli/``) is the top: it imports host and boards, and nothing imports it.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"hw": "tritium.hw", "sim": "tritium.sim", "host": "tritium.host",
            "boards": "tritium.boards", "cli": "tritium.cli"}
CONTRACTS = {"tritium.hw.config", "tritium.hw.numerics", "tritium.hw.memory_model",
             "tritium.hw.control.isa", "tritium.hw.link.protocol", "tritium.hw.link.window_map",
             "tritium.hw.errors", "tritium.hw.head_layout"}
# Package __init__ modules that importing a contract runs: they must stay empty of imports.
CONTRACT_PARENTS = {"tritium.hw", "tritium.hw.control", "tritium.hw.link"}


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["tritium", *parts])


def modules():
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield module_name(path), path


def imports(name: str, path: Path) -> set:
    """Every module ``path`` imports, absolute, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            # ``from . import x`` and ``from tritium.hw import numerics`` name modules too.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def project_imports(module_imports):
    """The tritium modules among ``module_imports`` that are real modules or packages."""
    known = {name for name, _ in modules()}
    return {m for m in module_imports if m in known}


ALL = dict(modules())
STDLIB = set(sys.stdlib_module_names)


def third_party(module_imports):
    return {m.split(".")[0] for m in module_imports
            if not m.startswith("tritium") and m.split(".")[0] not in STDLIB}


@pytest.mark.parametrize("name", sorted(CONTRACTS | CONTRACT_PARENTS))
def test_contracts_import_only_the_standard_library_and_each_other(name):
    found = imports(name, ALL[name])
    assert third_party(found) == set(), name
    assert project_imports(found) <= CONTRACTS | CONTRACT_PARENTS, name


@pytest.mark.parametrize("name", sorted(n for n in ALL if within(n, ["tritium.hw"])))
def test_gateware_imports_amaranth_and_contracts_only(name):
    found = imports(name, ALL[name])
    assert third_party(found) <= {"amaranth"}, name
    assert not any(within(m, ["tritium.sim", "tritium.host", "tritium.boards"])
                   for m in found), name


GOLDEN = sorted(n for n in ALL if within(n, ["tritium.sim.golden", "tritium.sim.reference"]))


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_model_never_imports_gateware(name):
    found = imports(name, ALL[name])
    assert third_party(found) <= {"numpy"}, name
    gateware = {m for m in project_imports(found) if within(m, ["tritium.hw"])}
    assert gateware <= CONTRACTS | CONTRACT_PARENTS, name
    assert not any(within(m, ["tritium.host", "tritium.boards"]) for m in found), name


@pytest.mark.parametrize("name", sorted(n for n in ALL if within(n, ["tritium.sim"])
                                         and not within(n, ["tritium.sim.testing"])))
def test_sim_never_imports_host(name):
    assert not any(within(m, ["tritium.host"]) for m in imports(name, ALL[name])), name


@pytest.mark.parametrize("name", sorted(n for n in ALL if within(n, ["tritium.boards"])))
def test_boards_never_import_host(name):
    assert not any(within(m, ["tritium.host"]) for m in imports(name, ALL[name])), name


@pytest.mark.parametrize("name", sorted(n for n in ALL if within(n, ["tritium.host"])))
def test_host_never_imports_boards(name):
    assert not any(within(m, ["tritium.boards"]) for m in imports(name, ALL[name])), name


PRODUCT = sorted(n for n in ALL if not within(n, ["tritium.sim.testing"]))


@pytest.mark.parametrize("name", PRODUCT)
def test_product_code_never_imports_the_test_drivers(name):
    assert not any(within(m, ["tritium.sim.testing"]) for m in imports(name, ALL[name])), name


@pytest.mark.parametrize("name", sorted(n for n in ALL if not within(n, ["tritium.cli"])))
def test_nothing_below_the_cli_imports_it(name):
    assert not any(within(m, ["tritium.cli"]) for m in imports(name, ALL[name])), name


def test_the_checker_sees_imports():
    """The scan finds what a module imports, relative and nested imports included, so the
    rules above cannot pass by seeing nothing."""
    assert "tritium.hw.numerics" in imports("tritium.hw.fixedpoint", ALL["tritium.hw.fixedpoint"])
    found = imports("tritium.host.sim_transport", ALL["tritium.host.sim_transport"])
    assert {"tritium.sim.backend.harness", "tritium.host.errors"} <= found  # nested, relative
    assert "tritium.hw.control.controller" in ALL and len(ALL) > 80
    assert "tritium.boards" in imports("tritium.cli.options", ALL["tritium.cli.options"])
