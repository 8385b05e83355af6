"""Benchmark the attention block in cycle-accurate simulation (Verilator): prefill and decode.

    python bench/attention.py --json                 # the kv260 preset's unit, KV260 memory
    python bench/attention.py --config tiny --memory kv260 --json

One layer of the attention block of an accelerator preset (``--config``, default
``kv260``: BitNet-0.7B's 16 heads of 96, its lanes and dims per cycle, its bus and token
tile) with its KV cache on port 0 of the board's memory model (``--memory``, default the
preset's board: the KV260's HP port, 15.84 B/cycle and 40 cycles of latency at 250 MHz),
filled through the simulation's backdoor. ``--model``, ``--lanes`` and ``--dims`` change
the shape. Prefill cases run a prompt from position 0 in jobs of the token tile; decode
cases store a random cache of ``context - 1`` records through the backdoor (not timed)
and time the one decode step at position ``context - 1``. Every output is checked
against golden.

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

from tritium.boards import preset_memory
from tritium.hw.attention.block import pass_key_counts
from tritium.hw.attention.kvcache import KVLayout
from tritium.hw.config import ACCELERATOR_PRESETS, MODEL_PRESETS, AttentionConfig
from tritium.hw.memory_model import MEMORY_MODELS
from tritium.sim.backend.backdoor import image_plusarg
from tritium.sim.backend.cosim import run_cocotb, stdout_to_stderr
from tritium.sim.testing.harness import AttentionHarness

# The memory model of each accelerator preset's board (the small presets' is on chip).


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
    parser.add_argument("--config", choices=sorted(ACCELERATOR_PRESETS), default="kv260",
                        help="accelerator preset whose attention unit to simulate")
    parser.add_argument("--memory", choices=sorted(MEMORY_MODELS), default=None,
                        help="board memory model (default: the preset's board)")
    parser.add_argument("--model", choices=sorted(MODEL_PRESETS), default=None,
                        help="model shape (default: the preset's)")
    parser.add_argument("--lanes", type=int, default=None, help="default: the preset's")
    parser.add_argument("--dims", type=int, default=None,
                        help="dims_per_cycle (default: the preset's attention_dims)")
    parser.add_argument("--prefill", type=int, nargs="*", default=[64, 128])
    parser.add_argument("--decode", type=int, nargs="*", default=[128, 512, 2048],
                        help="contexts (keys attended, including the new token)")
    parser.add_argument("--build-dir", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true",
                        help="reuse a finished build in --build-dir (same design)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    preset = ACCELERATOR_PRESETS[args.config]
    memory_model = MEMORY_MODELS[args.memory or preset_memory(args.config)]
    todo = cases(args.prefill, args.decode)
    longest = max(c["start"] + c["tokens"] for c in todo)
    base = MODEL_PRESETS[args.model] if args.model else preset.model
    model = dataclasses.replace(base, layers=1, max_context=max(longest, base.max_context))
    memory, max_queries = preset.memory, preset.max_tokens
    try:
        cfg = AttentionConfig.for_model(model, lanes=args.lanes or preset.attention_lanes,
                                        dims_per_cycle=args.dims or preset.attention.dims_per_cycle,
                                        io_lanes=preset.lanes)
        harness = AttentionHarness(model, cfg, memory, max_queries,
                                   board=(memory_model, preset.clock_hz))
    except ValueError as error:
        parser.error(str(error))
    bytes_per_cycle = memory_model.port_bytes_per_cycle(0, preset.clock_hz,
                                                        memory.bytes_per_word)
    latency = memory_model.latency_cycles(0, preset.clock_hz)
    build_root = args.build_dir or Path(tempfile.mkdtemp(prefix="tritium-bench-"))
    output = build_root / "attention.json"
    image = build_root / "kv-image.hex"
    settings = {"model": dataclasses.asdict(model), "attention": dataclasses.asdict(cfg),
                "memory": dataclasses.asdict(memory), "max_queries": max_queries,
                "cases": todo, "output": str(output), "backdoor_image": str(image)}
    sys.path.insert(0, str(Path(__file__).parent))
    started = time.perf_counter()
    with stdout_to_stderr():
        run_cocotb(harness, toplevel="attention_bench", test_module="tb_attention_bench",
                   build_dir=build_root / "attention",
                   extra_env={"ATTENTION_BENCH_SETTINGS": json.dumps(settings)},
                   reuse=args.reuse, optimize="-O2",   # cycles do not depend on it
                   plusargs=[image_plusarg(image)])
    wall = time.perf_counter() - started
    layout = KVLayout(cfg, memory)
    results = [summarize(case, cfg, layout, float(bytes_per_cycle))
               for case in json.loads(output.read_text())]
    report = {"kind": "simulated (cycle-accurate, Verilator); work and bounds derived",
              "config": args.config, "model": model.name, "attention": dataclasses.asdict(cfg),
              "max_queries": max_queries, "data_width": memory.data_width,
              "memory_model": memory_model.name, "bytes_per_cycle": float(bytes_per_cycle),
              "latency": latency,
              "record_bytes": layout.words_per_record * memory.bytes_per_word,
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
