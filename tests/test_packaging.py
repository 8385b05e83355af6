"""Every source package in the repository is installed under its tritium.* name."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = ("hw", "sim", "host", "boards")


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
