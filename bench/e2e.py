"""Benchmark the whole accelerator in cycle-accurate simulation: prefill and decode.

    python bench/e2e.py --json                  # tiny model on the tiny design (Verilator)
    python bench/e2e.py --prompt 8 --decode 4

The shipped tiny model runs on the ``sim`` transport (the generated top on Verilator):
a prompt of ``--prompt`` tokens, then ``--decode`` decode steps, every logit checked
against the golden model. Per run it reads the controller's counters (cycles in total
and per kind of instruction) and sets them next to the *derived* ideal of each
instruction: a LINEAR's compute or weight-read bound, an ATTEND's key passes plus its
input and output beats, a NORM's vectors in plus the last one's codes out (its codes
need the vector's peak), a beat per cycle for GATE, LOAD and STORE. The gap is the
cost of running the units one after another plus fetch and pipeline latency. Nothing
is asserted: the numbers go to docs/performance.md.
"""

import argparse
import json
import sys
import time

import numpy as np

from tritium.host.accelerator import Accelerator
from tritium.host.importers import load_model
from tritium.host.sim_transport import SimTransport
from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.hw.attention.block import pass_key_counts
from tritium.hw.control.controller import COUNTER_OF_OPCODE
from tritium.hw.control.isa import OPCODES
from tritium.sim.golden.model import GoldenModel

NAMES = {code: name for name, code in OPCODES.items()}


def ideal_cycles(instruction, config, position, tokens) -> int:
    """The derived lower bound of one instruction's cycles (see the module docstring)."""
    name = NAMES[instruction["opcode"]]
    if name == "LINEAR":
        compute = instruction["beats"] * instruction["blocks"] * tokens    # one (kb, p, rb) per cycle
        words = -(-instruction["beats"] * instruction["blocks"]
                  * config.tlmm.tile.word_bits // config.data_width)
        return max(compute, words)
    if name == "ATTEND":
        a = config.attention
        beats = a.beats_per_key
        return (sum(pass_key_counts(a, position, tokens)) * beats
                + tokens * (a.heads + 2 * a.kv_heads) * beats + tokens * a.heads * beats)
    if name == "NORM":
        # The block's own bound: a vector's codes need its peak, so they leave after its
        # last beat is in (docs/elementwise.md); the next vector comes in meanwhile.
        return instruction["beats"] * (tokens + 1)
    if name in ("GATE", "LOAD", "STORE"):
        return instruction["beats"] * tokens
    return 0


def measure(accelerator, ids, config, golden, cache, position):
    """One run: its counters, the ideal per kind, and whether the logits match golden."""
    logits = accelerator.prefill(ids)
    matches = bool(np.array_equal(logits, golden.forward(ids, cache)))
    counters = accelerator.counters()
    ideal = {}
    for instruction in accelerator.compiled.instructions:
        name = NAMES[instruction["opcode"]]
        if name in COUNTER_OF_OPCODE:
            key = COUNTER_OF_OPCODE[name]
            ideal[key] = ideal.get(key, 0) + ideal_cycles(instruction, config, position, len(ids))
    return logits, matches, counters, ideal


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(ACCELERATOR_PRESETS), default="tiny")
    parser.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    parser.add_argument("--decode", type=int, default=8, help="decode steps")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    config = ACCELERATOR_PRESETS[args.config]
    model = load_model("tiny")
    golden = GoldenModel(model)
    cache = golden.new_cache()
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    transport = SimTransport(config)           # its build log goes to a file
    built = time.perf_counter()
    runs = []
    with Accelerator(config, transport, timeout=600) as accelerator:
        accelerator.load(model)
        loaded = time.perf_counter()
        ids = rng.integers(0, 256, args.prompt).tolist()
        for start in range(0, len(ids), config.max_tokens):
            chunk = ids[start:start + config.max_tokens]
            logits, matches, counters, ideal = measure(accelerator, chunk, config, golden,
                                                       cache, start)
            runs.append({"kind": "prefill", "position": start, "tokens": len(chunk),
                         "matches_golden": matches, "counters": counters, "ideal": ideal})
        token = int(np.argmax(logits[-1]))
        for step in range(args.decode):
            position = args.prompt + step
            logits, matches, counters, ideal = measure(accelerator, [token], config, golden,
                                                       cache, position)
            runs.append({"kind": "decode", "position": position, "tokens": 1,
                         "matches_golden": matches, "counters": counters, "ideal": ideal})
            token = int(np.argmax(logits[-1]))
    finished = time.perf_counter()

    def totals(kind):
        chosen = [r for r in runs if r["kind"] == kind]
        tokens = sum(r["tokens"] for r in chosen)
        cycles = sum(r["counters"]["cycles"] for r in chosen)
        ideal = sum(sum(r["ideal"].values()) for r in chosen)
        per_kind = {key: sum(r["counters"][key] for r in chosen)
                    for key in ("fetch_cycles", "move_cycles", "norm_cycles", "linear_cycles",
                                "gate_cycles", "attend_cycles")}
        ideal_kind = {key: sum(r["ideal"].get(key, 0) for r in chosen) for key in per_kind}
        return {"tokens": tokens, "cycles": cycles, "cycles_per_token": round(cycles / tokens, 1),
                "ideal_cycles": ideal, "fraction_of_ideal": round(ideal / cycles, 4),
                "cycles_by_kind": per_kind, "ideal_by_kind": ideal_kind,
                "projected_seconds_per_token": cycles / tokens / config.clock_hz}

    report = {"kind": "simulated (cycle-accurate, Verilator); ideals derived",
              "config": config.name, "clock_hz": config.clock_hz,
              "matches_golden": all(r["matches_golden"] for r in runs),
              "prefill": totals("prefill"), "decode": totals("decode"),
              "wall_seconds": {"build_or_cache": round(built - started, 1),
                               "load_model": round(loaded - built, 1),
                               "runs": round(finished - loaded, 1)},
              "runs": runs}
    if args.json:
        print(json.dumps(report))
    else:
        for kind in ("prefill", "decode"):
            t = report[kind]
            print(f"{kind:8} {t['cycles_per_token']:>9} cycles/token, ideal "
                  f"{t['ideal_cycles'] / t['tokens']:.0f} ({t['fraction_of_ideal']:.1%} of "
                  f"the cycles), {t['projected_seconds_per_token'] * 1e3:.2f} ms/token at "
                  f"{config.clock_hz / 1e6:g} MHz")
        print(f"matches golden: {report['matches_golden']}; wall {report['wall_seconds']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
