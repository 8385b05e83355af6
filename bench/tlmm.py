"""Benchmark the TLMM core in cycle-accurate simulation (Verilator): decode and prefill.

    python bench/tlmm.py --json                    # the t32r16 engine, two memory models
    python bench/tlmm.py --engine small --json
    python bench/tlmm.py --engine kv260 --bandwidth 16 --json   # the kv260 preset's, one HP port

Engines by name (``hw/config.py``): ``small``, ``mid``, ``t32r16``, or an accelerator
preset (``tiny``, ``ulx3s``, ``kv260``) for its engine, each with its buffers enlarged
where the cases need more (4096 rows, K 1536, a tile of 8 tokens).

For decode GEMVs (1536x1536, 4096x1536) and a 64-token prefill (1536x1536), it reports
the simulated cycles against the compute ideal (padded weights / (G*T*R) per token)
and against the memory bound (packed bytes / bandwidth), once with memory that is not
the limit and once with the board's bandwidth. Every figure is *simulated*; the ideal
and bound are *derived*. Nothing here is asserted: the numbers go to docs/performance.md.
"""

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from tritium.hw.config import ACCELERATOR_PRESETS, TLMM_PRESETS, TLMMConfig, tlmm_preset
from tritium.hw.memory.port import MemoryConfig
from tritium.host.packer import PackedTensor
from tritium.sim.backend.cosim import run_cocotb, stdout_to_stderr
from tritium.sim.testing.harness import TLMMHarness

ENGINES = (*TLMM_PRESETS, *ACCELERATOR_PRESETS)
CASES = [
    {"name": "decode 1536x1536", "n": 1536, "k": 1536, "tokens": 1},
    {"name": "decode 4096x1536", "n": 4096, "k": 1536, "tokens": 1},
    {"name": "prefill 64 tokens 1536x1536", "n": 1536, "k": 1536, "tokens": 64},
]
# KV260: 12.8 GB/s sustained PS DDR at 250 MHz is 51.2 bytes per cycle (the independent
# bitnet-kv260 design streams its weights at 12.73 GB/s over four 128-bit HP ports).
BOARD_BYTES_PER_CYCLE = 51.2
MEMORY_LATENCY = 40


def sized(engine: TLMMConfig) -> TLMMConfig:
    """``engine`` with buffers that hold every case: 4096 rows, K 1536, 8 tokens."""
    k = max(engine.max_k, -(-max(c["k"] for c in CASES) // engine.k_per_word) * engine.k_per_word)
    n = max(engine.max_n, -(-max(c["n"] for c in CASES) // engine.rows) * engine.rows)
    wide = dataclasses.replace(engine, max_k=k, max_n=n, tokens=max(engine.tokens, 8),
                               acc_width=64)
    return dataclasses.replace(wide, acc_width=max(engine.acc_width, wide.min_acc_width))


def memory_for(engine: TLMMConfig, bytes_per_cycle: float) -> MemoryConfig:
    """A bus wide enough for one weight word per cycle when memory must not limit."""
    width = 1 << max(6, math.ceil(math.log2(max(engine.tile.word_bits, bytes_per_cycle * 8))))
    return MemoryConfig(data_width=width, addr_width=20, len_width=10)


def run(engine_name: str, memory_name: str, bytes_per_cycle: float, build_root: Path):
    engine = sized(tlmm_preset(engine_name))
    memory = memory_for(engine, bytes_per_cycle)
    largest = max(PackedTensor(b"", (c["n"], c["k"]), engine.tile).bits for c in CASES)
    depth = 1 << math.ceil(math.log2(largest / memory.data_width + 1))
    harness = TLMMHarness(engine, memory, depth=depth, bytes_per_cycle=bytes_per_cycle,
                          latency=MEMORY_LATENCY, burst=256)
    output = build_root / f"{engine_name}-{memory_name}.json"
    settings = {"tlmm": dataclasses.asdict(engine), "memory": dataclasses.asdict(memory),
                "cases": CASES, "output": str(output)}
    sys.path.insert(0, str(Path(__file__).parent))
    started = time.perf_counter()
    with stdout_to_stderr():
        run_cocotb(harness, toplevel=f"tlmm_bench_{engine_name}_{memory_name}".replace("-", "_"),
                   test_module="tb_tlmm_bench",
                   build_dir=build_root / f"{engine_name}-{memory_name}",
                   extra_env={"TLMM_BENCH_SETTINGS": json.dumps(settings)})
    wall = time.perf_counter() - started
    results = []
    for case in json.loads(output.read_text()):
        rows, cols = engine.tile.padded_shape(case["n"], case["k"])
        tiles = math.ceil(case["tokens"] / engine.tokens)
        ideal = rows * cols * case["tokens"] / engine.macs_per_cycle
        packed_bytes = PackedTensor(b"", (case["n"], case["k"]), engine.tile).bits / 8
        memory_bound = tiles * packed_bytes / bytes_per_cycle
        bound = max(ideal, memory_bound)
        results.append({
            "case": case["name"], "memory": memory_name, "bytes_per_cycle": bytes_per_cycle,
            "simulated_cycles": case["cycles"],
            "compute_ideal_cycles": round(ideal), "memory_bound_cycles": round(memory_bound),
            "limit": "compute" if ideal >= memory_bound else "memory",
            "fraction_of_compute_peak": round(ideal / case["cycles"], 4),
            "fraction_of_memory_bandwidth": round(memory_bound / case["cycles"], 4),
            "fraction_of_bound": round(bound / case["cycles"], 4),
            "counters": case["counters"],
        })
    return {"engine": engine_name, "config": dataclasses.asdict(engine),
            "macs_per_cycle": engine.macs_per_cycle, "memory": memory_name,
            "data_width": memory.data_width, "latency": MEMORY_LATENCY,
            "simulation_wall_seconds": round(wall, 1), "results": results}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=ENGINES, default="t32r16")
    parser.add_argument("--bandwidth", type=float, default=BOARD_BYTES_PER_CYCLE,
                        help="board memory bytes per cycle (default: KV260 at 250 MHz)")
    parser.add_argument("--build-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    build_root = args.build_dir or Path(tempfile.mkdtemp(prefix="tritium-bench-"))
    engine = sized(tlmm_preset(args.engine))
    unlimited = engine.tile.word_bits / 8            # one weight word per cycle
    report = {"kind": "simulated (cycle-accurate, Verilator); ideal and bounds derived",
              "runs": [run(args.engine, "unlimited", unlimited, build_root),
                       run(args.engine, "board", args.bandwidth, build_root)]}
    if args.json:
        print(json.dumps(report))
    else:
        for run_report in report["runs"]:
            for r in run_report["results"]:
                print(f"{run_report['engine']:6} {r['memory']:9} {r['case']:28} "
                      f"{r['simulated_cycles']:>9} cycles  compute peak "
                      f"{r['fraction_of_compute_peak']:.1%}  memory bw "
                      f"{r['fraction_of_memory_bandwidth']:.1%}  ({r['limit']}-bound)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
