"""Benchmark the attention block in cycle-accurate simulation (Verilator): prefill and decode.

    python bench/attention.py --json                 # BitNet-0.7B's heads, the kv260 unit
    python bench/attention.py --model tiny --lanes 4 --dims 8 --json

One layer of ``bitnet-b1.58-large`` attention (16 heads of 96, multi-head) with its KV
cache in a SimMemory at the KV260's bandwidth. Prefill cases run a prompt from
position 0 in jobs of ``max_queries`` tokens; decode cases store a random cache of
``context - 1`` records through the harness's load port (not timed) and time the one
decode step at position ``context - 1``. Every output is checked against golden.

For each case it reports the simulated cycles (and their split into intake, attention
and output phases) next to the derived work: the compute ideal (every multiply of
every lane busy), the key-pass bound (the passes the scheduler forms, one key per
``head_dim / dims_per_cycle`` cycles) and the memory bound (cache bytes read and
written at the memory's bandwidth). Nothing here is asserted: the numbers go to
docs/performance.md.
"""

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from tritium.hw.attention.block import pass_key_counts
from tritium.hw.attention.kvcache import KVLayout
from tritium.hw.config import MODEL_PRESETS, AttentionConfig
from tritium.hw.memory.port import MemoryConfig
from tritium.sim.cosim import run_cocotb, stdout_to_stderr
from tritium.sim.harness import AttentionHarness

# KV260: 12.8 GB/s sustained PS DDR at 250 MHz is 51.2 bytes per cycle (tellme.md 3).
BOARD_BYTES_PER_CYCLE = 51.2
MEMORY_LATENCY = 40
# A 512-bit bus so that one word per cycle is not below the board's bandwidth.
MEMORY = MemoryConfig(data_width=512, addr_width=20, len_width=12)
MAX_QUERIES = 16


def derived(cfg: AttentionConfig, layout: KVLayout, bytes_per_cycle, start, tokens) -> dict:
    """The work of one job (derived): multiplies, and the cycles each bound allows."""
    beats = cfg.beats_per_key
    keys = pass_key_counts(cfg, start, tokens)
    attended = sum(start + t + 1 for t in range(tokens)) * cfg.heads
    record_bytes = layout.words_per_record * layout.memory.bytes_per_word
    moved = (sum(keys) + tokens * cfg.kv_heads) * record_bytes
    return {
        "macs": 2 * attended * cfg.head_dim,                 # q.k and p.v
        "compute_ideal": attended * beats / cfg.lanes,
        "key_pass_bound": sum(keys) * beats,
        "memory_bound": moved / bytes_per_cycle,
        "intake_beats": tokens * (cfg.heads + 2 * cfg.kv_heads) * beats,
        "output_beats": tokens * cfg.heads * beats,
        "cache_bytes": moved,
    }


def summarize(case: dict, cfg: AttentionConfig, layout: KVLayout, bytes_per_cycle) -> dict:
    jobs = case["jobs"]
    total = {key: 0.0 for key in derived(cfg, layout, 1, 0, 1)}
    for job in jobs:
        for key, value in derived(cfg, layout, bytes_per_cycle, job["start"],
                                  job["tokens"]).items():
            total[key] += value
    cycles = sum(job["done"] - job["sent"] for job in jobs)
    phases = {"intake": sum(job["inputs_taken"] - job["sent"] for job in jobs),
              "attend": sum(job["first_output"] - job["inputs_taken"] for job in jobs),
              "output": sum(job["done"] - job["first_output"] for job in jobs)}
    return {
        "case": case["name"], "jobs": len(jobs), "simulated_cycles": cycles,
        "phase_cycles": phases, "busy_cycles": case["busy_cycles"],
        **{f"{key}_cycles" if key.endswith(("ideal", "bound")) else key: round(value)
           for key, value in total.items()},
        "fraction_useful": round(total["compute_ideal"] / cycles, 4),
        "fraction_of_key_pass_bound": round(total["key_pass_bound"] / cycles, 4),
        "attend_phase_vs_key_pass_bound": round(total["key_pass_bound"] / phases["attend"], 4),
        "fraction_of_memory_bandwidth": round(total["memory_bound"] / cycles, 4),
    }


def cases(prefills, contexts) -> list:
    return ([{"name": f"prefill {n} tokens", "kind": "prefill", "start": 0, "tokens": n}
             for n in prefills] +
            [{"name": f"decode at context {c}", "kind": "decode", "start": c - 1, "tokens": 1}
             for c in contexts])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODEL_PRESETS), default="bitnet-b1.58-large")
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--dims", type=int, default=16, help="dims_per_cycle")
    parser.add_argument("--prefill", type=int, nargs="*", default=[64, 128])
    parser.add_argument("--decode", type=int, nargs="*", default=[128, 512, 2048],
                        help="contexts (keys attended, including the new token)")
    parser.add_argument("--bandwidth", type=float, default=BOARD_BYTES_PER_CYCLE,
                        help="memory bytes per cycle (default: KV260 at 250 MHz)")
    parser.add_argument("--build-dir", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true",
                        help="reuse a finished build in --build-dir (same design)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    todo = cases(args.prefill, args.decode)
    longest = max(c["start"] + c["tokens"] for c in todo)
    model = dataclasses.replace(MODEL_PRESETS[args.model], layers=1,
                                max_context=max(longest, MODEL_PRESETS[args.model].max_context))
    try:
        cfg = AttentionConfig.for_model(model, lanes=args.lanes, dims_per_cycle=args.dims)
        harness = AttentionHarness(model, cfg, MEMORY, MAX_QUERIES,
                                   bytes_per_cycle=args.bandwidth, latency=MEMORY_LATENCY)
    except ValueError as error:
        parser.error(str(error))
    build_root = args.build_dir or Path(tempfile.mkdtemp(prefix="tritium-bench-"))
    output = build_root / "attention.json"
    settings = {"model": dataclasses.asdict(model), "attention": dataclasses.asdict(cfg),
                "memory": dataclasses.asdict(MEMORY), "max_queries": MAX_QUERIES,
                "cases": todo, "output": str(output)}
    sys.path.insert(0, str(Path(__file__).parent))
    started = time.perf_counter()
    with stdout_to_stderr():
        run_cocotb(harness, toplevel="attention_bench", test_module="tb_attention_bench",
                   build_dir=build_root / "attention",
                   extra_env={"ATTENTION_BENCH_SETTINGS": json.dumps(settings)},
                   reuse=args.reuse, optimize="-O2")   # cycles do not depend on it
    wall = time.perf_counter() - started
    layout = KVLayout(cfg, MEMORY)
    results = [summarize(case, cfg, layout, args.bandwidth)
               for case in json.loads(output.read_text())]
    report = {"kind": "simulated (cycle-accurate, Verilator); work and bounds derived",
              "model": model.name, "attention": dataclasses.asdict(cfg),
              "max_queries": MAX_QUERIES, "data_width": MEMORY.data_width,
              "bytes_per_cycle": args.bandwidth, "latency": MEMORY_LATENCY,
              "record_bytes": layout.words_per_record * MEMORY.bytes_per_word,
              "simulation_wall_seconds": round(wall, 1), "results": results}
    if args.json:
        print(json.dumps(report))
    else:
        for r in results:
            print(f"{r['case']:24} {r['simulated_cycles']:>9} cycles  useful "
                  f"{r['fraction_useful']:.1%}  key-pass bound "
                  f"{r['fraction_of_key_pass_bound']:.1%}  memory bw "
                  f"{r['fraction_of_memory_bandwidth']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
