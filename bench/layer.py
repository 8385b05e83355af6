"""Benchmark one full-size decoder layer on the simulated accelerator and board memory.

    python bench/layer.py --model bitnet-b1.58-large --config kv260 --json
    python bench/layer.py --contexts 64,512 --prefill 8
    python bench/layer.py --config tiny --memory kv260     # the tiny shape on KV260 memory

The real top (controller, TLMM engine, element-wise unit, attention, memory port) of the
accelerator preset ``--config``, reduced to the one decoder layer it simulates (the same
units and dimensions; the KV cache holds one layer), runs on Verilator with its memory
port on the board's memory model (``--memory``, default the board's: ``kv260`` is the
KV260's HP ports as measured; the preset's ``memory_ports`` of them, or ``--ports``, the
design's port striped across them). The model (random weights of the true
shape) and a KV cache of random records are stored through the simulation's backdoor,
not the link. Cases, in this order: a prefill run of ``--prefill`` tokens at position 0,
then a decode step at each context of ``--contexts`` (position = context - 1, the
records below it random). Every output is checked bit for bit against the golden model
of that layer, which keeps the same cache.

Per case: the controller's counters (simulated cycles and memory words per kind of
instruction) and the words through each memory port (the memory model's counters; they
include the host link's io transfers around the run, reported as ``link_words``).
Nothing is asserted about time: the figures go to docs/performance.md.
"""

import argparse
import dataclasses
import json
import sys
import time

import numpy as np

from tritium.boards import preset_memory
from tritium.host.accelerator import Accelerator
from tritium.host.model import Model
from tritium.host.performance import as_built
from tritium.host.sim_transport import BoardSimTransport
from tritium.hw.attention.kvcache import kv_layout
from tritium.hw.config import ACCELERATOR_PRESETS, KV_READS, MODEL_PRESETS
from tritium.hw.control.controller import WORD_COUNTERS
from tritium.hw.memory_model import MEMORY_MODELS
from tritium.sim.testing.attention_tb import cache_image
from tritium.sim.golden.fixed import F_ACT
from tritium.sim.golden.model import GoldenModel, act_codes

# The memory model of each accelerator preset's board (the small presets' is on chip).


def layer_slice(config, model_config):
    """``config`` serving one layer of ``model_config``: the same units, a one-layer KV
    cache, its runs starting from hidden states (host embedding) and ending with them
    (host head: a layer's timing, without the LM head's pass). ``ValueError`` says what
    of the model the design cannot hold."""
    one_layer = dataclasses.replace(model_config, layers=1)
    design = dataclasses.replace(config, name=f"{config.name}-layer",
                                 model=dataclasses.replace(config.model, layers=1),
                                 embedding="host", head="host")
    design.check_model(one_layer)
    return design, one_layer


def fill_cache(cache, start, end, rng):
    """Store records ``start .. end - 1`` of layer 0 in a golden cache: the codes and
    scales of random head vectors (int32 Q.12, as the QKV linears give them)."""
    cfg = cache.config
    shape = (end - start, cfg.kv_heads, cfg.head_dim)
    keys = np.rint(rng.standard_normal(shape) * 2.0 ** F_ACT * 2).astype(np.int64)
    values = np.rint(rng.standard_normal(shape) * 2.0 ** F_ACT).astype(np.int64)
    cache.store(0, np.arange(start, end), *act_codes(keys), *act_codes(values))


def cache_records(cache, layout, start, end):
    """The memory image of records ``start .. end - 1`` of layer 0, per kv head."""
    record_bytes = layout.words_per_record * layout.memory.bytes_per_word
    return [(address + start * layout.words_per_record, data[start * record_bytes:])
            for address, data in cache_image(cache, layout, 0, end)]


def hidden_states(rng, tokens, hidden):
    """Random residual-stream vectors, int32 Q19.12 of about unit size."""
    return np.rint(rng.standard_normal((tokens, hidden)) * 2.0 ** F_ACT).astype(np.int64)


def run_case(accelerator, transport, golden, cache, name, phase, position, x):
    """One run on the device and on the golden layer; its counters and port words."""
    before = transport.memory_counters()
    started = time.perf_counter()
    accelerator.reset(position)
    got = accelerator.run_states(x)
    wall = time.perf_counter() - started
    after = transport.memory_counters()
    positions = np.arange(position, position + len(x))
    expected = golden.layer(0, golden.qmodel.layers[0], x, positions, cache)
    counters = accelerator.counters()
    ports = {port: {kind: after[port][kind] - before[port][kind] for kind in words}
             for port, words in after.items()}
    run_words = sum(counters[name] for name in WORD_COUNTERS)
    port_words = sum(p["read_words"] + p["written_words"] for p in ports.values())
    return {"name": name, "phase": phase, "position": position, "tokens": len(x),
            "matches_golden": bool(np.array_equal(got, expected)),
            "counters": counters, "port_words": ports, "link_words": port_words - run_words,
            "wall_seconds": round(wall, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(ACCELERATOR_PRESETS), default="kv260",
                        help="accelerator preset (default: kv260)")
    parser.add_argument("--model", choices=sorted(MODEL_PRESETS), default=None,
                        help="model shape (random weights; default: the preset's model)")
    parser.add_argument("--memory", choices=sorted(MEMORY_MODELS), default=None,
                        help="board memory model (default: the preset's board)")
    parser.add_argument("--ports", type=int, default=None,
                        help="memory ports the design reads through, striped (default: the "
                             "preset's memory_ports)")
    parser.add_argument("--weight-port-words", type=int, default=None,
                        help="bus words per word of the TLMM's own weight port, 1 for none "
                             "(default: the preset's weight_port_words, at most --ports)")
    parser.add_argument("--attention-lanes", type=int, default=None,
                        help="the attention unit's lanes (default: the preset's)")
    parser.add_argument("--attention-dims", type=int, default=None,
                        help="dimensions per cycle of each attention lane, a power-of-two "
                             "multiple of the preset's lanes (default: the preset's)")
    parser.add_argument("--kv-reads", choices=KV_READS, default=None,
                        help="the port the attention reads the KV cache through (default: "
                             "the preset's kv_reads; 'units' on a design without a weight "
                             "port)")
    parser.add_argument("--weight-queue", type=int, default=None,
                        help="weight-port words read ahead of the TLMM by PREFETCH, 0 for "
                             "none (default: the preset's weight_queue)")
    parser.add_argument("--contexts", default="64,512,1024,2048",
                        help="decode contexts, comma-separated (default: 64,512,1024,2048)")
    parser.add_argument("--prefill", type=int, default=None,
                        help="prompt tokens of the prefill run (default: the token tile)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    preset = ACCELERATOR_PRESETS[args.config]
    args.model = args.model or preset.model.name
    memory = MEMORY_MODELS[args.memory or preset_memory(args.config)]
    try:
        fields = {}
        if args.ports is not None:
            if not 1 <= args.ports <= len(memory.ports):
                raise ValueError(f"--ports {args.ports}: memory model {memory.name!r} has "
                                 f"{len(memory.ports)} ports")
            fields.update(memory_ports=args.ports,
                          weight_port_words=min(preset.weight_port_words, args.ports))
        if args.weight_port_words is not None:
            fields["weight_port_words"] = args.weight_port_words
        if fields.get("weight_port_words", preset.weight_port_words) == 1:
            # The preset's may have needed a weight port.
            fields.update(kv_reads="units", weight_queue=0)
        fields.update({name: getattr(args, name) for name in
                       ("attention_lanes", "attention_dims", "kv_reads", "weight_queue")
                       if getattr(args, name) is not None})
        preset = dataclasses.replace(preset, **fields)
        config, model_config = layer_slice(preset, MODEL_PRESETS[args.model])
        contexts = sorted(int(c) for c in args.contexts.split(","))
    except ValueError as error:
        print(f"bench/layer.py: error: {args.model} on {args.config}: {error}", file=sys.stderr)
        return 2
    prefill = args.prefill or config.max_tokens
    if not 1 <= prefill <= config.max_tokens or not contexts or contexts[0] <= prefill \
            or contexts[-1] > config.attention.capacity:
        print(f"bench/layer.py: error: the prefill run takes 1 .. {config.max_tokens} tokens "
              f"and the contexts must lie in {prefill + 1} .. {config.attention.capacity}",
              file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)

    started = time.perf_counter()
    model = Model.random(model_config, seed=args.seed)
    golden = GoldenModel(model)
    transport = BoardSimTransport(config, memory)
    built = time.perf_counter()
    cases = []
    with Accelerator(config, transport, timeout=3600) as accelerator:
        accelerator.load(model)
        loaded = time.perf_counter()
        cache = golden.new_cache()
        cases.append(run_case(accelerator, transport, golden, cache, f"prefill-{prefill}",
                              "prefill", 0, hidden_states(rng, prefill, model_config.hidden)))
        # The records a decode at the longest context reads, beyond the prompt's: random.
        fill_cache(cache, prefill, contexts[-1] - 1, rng)
        layout = kv_layout(config)
        transport.load_image(cache_records(cache, layout, prefill, contexts[-1] - 1))
        for context in contexts:
            cases.append(run_case(accelerator, transport, golden, cache, f"decode-{context}",
                                  "decode", context - 1,
                                  hidden_states(rng, 1, model_config.hidden)))
    finished = time.perf_counter()

    report = {"kind": "simulated (cycle-accurate, Verilator)", "config": json.loads(config.to_json()),
              **as_built(config),
              "preset": args.config, "model": args.model, "memory_model": memory.name,
              "ports": config.memory_ports, "clock_hz": config.clock_hz,
              "word_bytes": config.data_width // 8,
              "matches_golden": all(case["matches_golden"] for case in cases),
              "wall_seconds": {"build_or_cache": round(built - started, 1),
                               "load": round(loaded - built, 1),
                               "runs": round(finished - loaded, 1),
                               "total": round(finished - started, 1)},
              "cases": cases}
    if args.json:
        print(json.dumps(report))
    else:
        word_bytes = report["word_bytes"]
        for case in cases:
            c = case["counters"]
            moved = sum(c[name] for name in WORD_COUNTERS) * word_bytes
            print(f"{case['name']:>12}: {c['cycles']:>9,} cycles ({c['linear_cycles']:,} linear, "
                  f"{c['attend_cycles']:,} attend, {c['norm_cycles']:,} norm), "
                  f"{moved / 1e6:.2f} MB moved, {c['cycles'] / config.clock_hz * 1e3:.2f} ms at "
                  f"{config.clock_hz / 1e6:g} MHz, golden {'equal' if case['matches_golden'] else 'DIFFERENT'}")
        print(f"wall seconds: {report['wall_seconds']}")
    return 0 if report["matches_golden"] else 1


if __name__ == "__main__":
    sys.exit(main())
