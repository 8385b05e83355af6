"""The analytic performance model against every simulated case available.

    python bench/agreement.py --json                # simulate the tiny end-to-end run (Verilator)
    python bench/agreement.py --e2e e2e.json        # use a saved `bench/e2e.py --json` report
    python bench/agreement.py --no-write            # print, leave docs/ alone

Cases: the tiny end-to-end run (``bench/e2e.py``'s ``simulate``: the tiny model on the
simulated ``tiny`` top, a prompt of ``--prompt`` tokens in runs of the token tile, then
``--decode`` decode steps), simulated afresh unless ``--e2e`` names its JSON, and the
recorded full-size simulations of ``--reports`` (default: ``docs/bench-layer-kv260.json``,
one BitNet-0.7B layer from ``bench/layer.py``, and ``docs/bench-e2e-kv260.json``, the whole
model from ``bench/e2e.py --config kv260 --memory kv260`` (and ``-int4``, with
``--head-format int4``; both end with a decode step with the device's head), their
``-2p`` versions
recorded on two HP ports without a weight port and their ``-hp0`` versions on one,
before the preset read through four, and
``docs/bench-layer-kv260-2b.json``, BitNet-2B-4T's layer on ``kv260-2b`` (and its
``-2p`` version on two ports); those that exist). For each
run, the controller's counters next to :func:`tritium.host.performance.estimate_run` of
the same run: total cycles and cycles per kind, and memory words per kind. Writes
``docs/bench-agreement.json`` and the table between the ``agreement`` markers of
``docs/performance.md`` (``--no-write``: neither). Nothing is asserted here;
``tests/host/test_performance.py`` holds the model to 5%.
"""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from tritium.host.performance import KINDS, RECORDED_REPORTS, agreement, report_cases
from tritium.hw.config import ACCELERATOR_PRESETS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# The recorded full-size reports (the tiny end-to-end run is simulated afresh or given).
REPORTS = tuple(DOCS / name for name in RECORDED_REPORTS if name != "bench-e2e-tiny.json")
BEGIN, END = "<!-- agreement:begin -->", "<!-- agreement:end -->"


def simulate_e2e(prompt: int, decode: int) -> dict:
    """``bench/e2e.py``'s report of the tiny model on the simulated tiny top."""
    spec = importlib.util.spec_from_file_location("bench_e2e", Path(__file__).with_name("e2e.py"))
    e2e = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(e2e)
    config = ACCELERATOR_PRESETS["tiny"]
    return e2e.simulate(config, e2e.open_model("tiny", config), None, prompt, decode)


def _percent(error) -> str:
    return "n/a" if error is None else f"{error:+.2%}"


def table(result: dict) -> str:
    """The agreement as a Markdown table."""
    lines = ["| case | memory | tokens at position | simulated cycles | model | error | "
             "largest error of a kind | memory words |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["cases"]:
        kinds = {k: v for k, v in row["kinds"].items() if v["simulated"]}
        worst = max(kinds, key=lambda k: abs(kinds[k]["error"] or 0))
        words = row["words"]
        exact = all(v["simulated"] == v["model"] for v in words.values())
        lines.append(
            f"| {row['name']} | {row['memory_model']} | {row['tokens']} at {row['position']} | "
            f"{row['cycles']['simulated']:,} | {row['cycles']['model']:,} | "
            f"{_percent(row['cycles']['error'])} | {worst} {_percent(kinds[worst]['error'])} "
            f"({kinds[worst]['simulated']:,} vs {kinds[worst]['model']:,}) | "
            f"{'equal' if exact and words else 'differ' if words else 'not counted'} |")
    lines.append("")
    lines.append(f"Largest error of a run's total: {result['max_abs_error']:.3%}; per kind: "
                 + ", ".join(f"{k} {result['max_abs_kind_error'][k]:.2%}" for k in KINDS) + ".")
    return "\n".join(lines)


def write_docs(result: dict, markdown: Path = DOCS / "performance.md",
               output: Path = DOCS / "bench-agreement.json") -> None:
    """``result`` to ``output`` and its table between the markers of ``markdown``."""
    output.write_text(json.dumps(result, indent=1) + "\n")
    text = markdown.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"bench/agreement.py: {markdown} has no {BEGIN} ... {END} section")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    markdown.write_text(f"{head}{BEGIN}\n{table(result)}\n{END}{tail}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--e2e", type=Path, default=None,
                        help="a saved `bench/e2e.py --json` report (default: simulate afresh)")
    parser.add_argument("--reports", type=Path, nargs="*", default=None,
                        help="recorded bench/layer.py or bench/e2e.py reports (default: "
                             + ", ".join(str(p.relative_to(ROOT)) for p in REPORTS)
                             + ", those present)")
    parser.add_argument("--prompt", type=int, default=16, help="prompt tokens of a fresh e2e run")
    parser.add_argument("--decode", type=int, default=8, help="decode steps of a fresh e2e run")
    parser.add_argument("--no-write", action="store_true", help="leave docs/ alone")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    for path in [args.e2e] + (args.reports or []):
        if path is not None and not path.is_file():
            parser.error(f"{path}: no such file")
    reports = args.reports if args.reports is not None else [p for p in REPORTS if p.is_file()]
    cases = report_cases(args.e2e) if args.e2e else report_cases(
        simulate_e2e(args.prompt, args.decode), "bench/e2e.py (simulated by this run)")
    for path in reports:
        cases += report_cases(path)
    result = {"kind": "simulated cycles (Verilator) against the analytic model "
                      "(host/performance.py)",
              "sources": sorted({case.source for case in cases}), **agreement(cases)}
    if not args.no_write:
        write_docs(result)
    print(json.dumps(result) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
