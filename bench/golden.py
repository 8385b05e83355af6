"""The golden model's own speed on this host: prefill and decode of full-size shapes.

    python bench/golden.py --json --threads 1      # writes docs/bench-golden.json
    python bench/golden.py --model bitnet-b1.58-large --contexts 64 --decode 4 --no-write

For each ``--model`` (a preset of ``tritium.hw.config.MODEL_PRESETS``; default
``bitnet-b1.58-large`` and ``bitnet-b1.58-2b-4t``) a random model of the true shape
(``Model.random``, seed 0) runs on :class:`tritium.sim.golden.model.GoldenModel`, the
bit-exact integer model of the accelerator. Per context ``c`` of ``--contexts``: a
prefill of ``c`` random tokens into an empty cache (the last token's logits, as
``tritium run`` asks for), then ``--decode`` greedy decode steps at positions ``c``,
``c + 1``, ... Reported: prefill tokens/s, decode tokens/s (the median step), the
one-time costs (making the random model; preparing the golden model,
``GoldenModel.prepare``: the float32 weight operands and the quantized LM head), and the peak resident memory of
the process that ran the model. Each model runs in a process of its own, so each peak
is its own; ``--threads`` sets the BLAS threads of those processes (default: the BLAS's
own choice, every core).

Every figure is **measured (host)**: NumPy on this machine's CPU, wall clock
(``time.perf_counter``), not hardware. The machine's load average when the run started
is recorded, as other jobs sharing the cores slow it. Nothing is asserted here.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "bench-golden.json"
MODELS = ("bitnet-b1.58-large", "bitnet-b1.58-2b-4t")
GOALS = {"bitnet-b1.58-large": 5.0, "bitnet-b1.58-2b-4t": 2.0}      # decode tokens/s (issue 17)
KIND = "measured (host)"
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def measure(name: str, contexts: list, decode: int) -> dict:
    """One model's figures, in this process (``--worker``)."""
    import resource

    import numpy as np

    from tritium.host.model import Model
    from tritium.hw.config import MODEL_PRESETS
    from tritium.sim.golden.model import GoldenModel

    config = MODEL_PRESETS[name]
    started = time.perf_counter()
    model = Model.random(config, seed=0)
    made = time.perf_counter()
    golden = GoldenModel(model)
    golden.prepare()                                        # operands and head, once
    prepared = time.perf_counter()
    rng = np.random.default_rng(1)
    runs = []
    for context in contexts:
        cache = golden.new_cache()
        ids = rng.integers(0, config.vocab_size, context)
        start = time.perf_counter()
        logits = golden.forward(ids, cache, "last")
        prefill = time.perf_counter() - start
        steps = []
        for _ in range(decode):
            start = time.perf_counter()
            logits = golden.forward([int(np.argmax(logits[-1]))], cache, "last")
            steps.append(time.perf_counter() - start)
        runs.append({"context": context, "prefill_seconds": round(prefill, 3),
                     "prefill_tokens_per_s": round(context / prefill, 2),
                     "decode_steps": decode,
                     "decode_seconds_each": [round(step, 4) for step in steps],
                     "decode_tokens_per_s": round(1 / float(np.median(steps)), 2)
                     if steps else None})
    return {"model": name, "config": json.loads(config.to_json()),
            "ternary_weights": config.layers * config.ternary_weights_per_layer,
            "random_model_seconds": round(made - started, 1),
            "prepare_seconds": round(prepared - made, 1),
            # ru_maxrss is in KiB on Linux.
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "runs": runs}


def run_worker(name: str, args) -> dict:
    """:func:`measure` in a fresh process with the BLAS threads of ``--threads``."""
    env = dict(os.environ)
    if args.threads:
        env.update({variable: str(args.threads) for variable in BLAS_THREADS})
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
               "--contexts", ",".join(map(str, args.contexts)), "--decode", str(args.decode)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"bench/golden.py: the run of {name} failed:\n{result.stderr}")
    return json.loads(result.stdout)


def contexts_list(text: str) -> list:
    values = [int(part) for part in text.split(",") if part]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"contexts must be positive integers, not {text!r}")
    return values


def summary(report: dict) -> str:
    lines = [f"golden model on this host ({report['kind']}; BLAS threads "
             f"{report['host']['blas_threads']}, load {report['host']['load_average_at_start']}):"]
    for entry in report["models"]:
        lines.append(f"  {entry['model']}: prepared in {entry['prepare_seconds']} s, peak "
                     f"{entry['peak_rss_bytes'] / 2 ** 30:.1f} GiB")
        for run in entry["runs"]:
            lines.append(f"    context {run['context']}: prefill {run['prefill_tokens_per_s']} "
                         f"tokens/s, decode {run['decode_tokens_per_s']} tokens/s")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None,
                        help=f"a model preset (repeatable; default {', '.join(MODELS)})")
    parser.add_argument("--contexts", type=contexts_list, default=[64, 1024],
                        help="comma-separated prompt lengths (default 64,1024)")
    parser.add_argument("--decode", type=int, default=8, help="decode steps after each prefill")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS threads (default: the BLAS's choice)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {OUTPUT.name}")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args.contexts, args.decode)))
        return 0
    from tritium.hw.config import MODEL_PRESETS
    from tritium.sim.testing.bench_scripts import provenance
    models = args.model or list(MODELS)
    unknown = [name for name in models if name not in MODEL_PRESETS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; choose from {', '.join(MODEL_PRESETS)}")
    import numpy as np
    report = {**provenance(KIND, "golden", argv),
              "host": {"machine": platform.machine(), "processor": platform.processor(),
                       "cpus": os.cpu_count(), "numpy": np.__version__,
                       "blas_threads": args.threads or "default",
                       "load_average_at_start": round(os.getloadavg()[0], 2)},
              "goals_decode_tokens_per_s": {name: GOALS[name] for name in models
                                            if name in GOALS},
              "models": [run_worker(name, args) for name in models]}
    if not args.no_write:
        OUTPUT.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1) if args.json else summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
