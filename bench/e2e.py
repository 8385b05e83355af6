"""Benchmark the whole accelerator in cycle-accurate simulation: prefill and decode.

    python bench/e2e.py --json                  # tiny model on the tiny design (Verilator)
    python bench/e2e.py --prompt 8 --decode 4
    python bench/e2e.py --config tiny --memory kv260        # on the KV260's memory model
    python bench/e2e.py --config kv260 --model bitnet-b1.58-large --prompt 8 --decode 1

A model (``--model``: ``tiny``, a checkpoint path, or a named shape with random weights;
default: the design's own model, ``tiny`` with its shipped weights) runs on the simulated
top of an accelerator preset (``--config``). The top keeps its model in on-chip memory,
as the ``sim`` transport builds it, or with ``--memory`` (needed where the memory is too
large to be on chip, e.g. ``kv260``) on that board memory model (its first
``memory_ports`` ports, the design's port striped across them), loaded through the
backdoor. A prompt of ``--prompt`` tokens, then ``--decode`` decode steps,
every logit checked against the golden model. Per run it reads the controller's counters
(cycles in total and per kind of instruction, memory words per kind) and sets them next
to the *derived* ideal of each instruction: a LINEAR's compute or weight-read bound, an
ATTEND's key passes plus its input and output beats, a NORM's vectors in plus the last
one's codes out (its codes need the vector's peak; a NORM of the next LINEAR's output,
whose values that LINEAR brings, its gains' words and the last vector's codes), a beat
per cycle for LOAD and STORE. The gap is the cost of running the units one after
another plus fetch and pipeline latency. On a design with the LM head on the device,
one more decode step then runs the whole program with HEAD (``device_head``: its cycles
and the head's words, its top-k checked against golden): the head unit at the model's
full size. On a design that also looks up its embeddings (it chooses its own tokens),
the ``--decode`` steps then run again from that step's choice as one run of as many
greedy steps (``device_steps``: its cycles and per step, its choices checked against
golden; none for ``--decode 1``).
``--head-format int4`` runs the design with the int4 head. Nothing is asserted: the
numbers go to docs/performance.md.
"""

import argparse
import json
import sys
import time

import numpy as np

from tritium.host.accelerator import Accelerator
from tritium.host.compiler import program_length
from tritium.host.errors import TritiumError
from tritium.host.importers import load_model
from tritium.host.model import Model
from tritium.host.performance import as_built
from tritium.host.runtime import GoldenCheck, generate
from tritium.host.sim_transport import BoardSimTransport, SimTransport
from tritium.hw.config import ACCELERATOR_PRESETS, HEAD_FORMATS, MODEL_PRESETS
from tritium.hw.attention.block import pass_key_counts
from tritium.hw.control.controller import COUNTER_OF_OPCODE
from tritium.hw.control.isa import FLAG_NEXT, OPCODES, design_steps
from tritium.hw.memory_model import MEMORY_MODELS

# On-chip memory in the Verilog is an initial image of every word: beyond this many
# words the design must run on a board memory model (``--memory``).
ONCHIP_WORDS_LIMIT = 2 ** 16

NAMES = {code: name for name, code in OPCODES.items()}


def ideal_cycles(instruction, config, position, tokens) -> int:
    """The derived lower bound of one instruction's cycles (see the module docstring)."""
    name = NAMES[instruction["opcode"]]
    if name == "LINEAR":
        compute = instruction["beats"] * instruction["blocks"] * tokens    # one (kb, p, rb) per cycle
        # The weight stream's words at one a cycle of the port it takes (the weight
        # port's, on a design with one).
        words = -(-instruction["beats"] * instruction["blocks"]
                  * config.tlmm.tile.word_bits // config.weight_memory.data_width)
        return max(compute, words)
    if name == "ATTEND":
        a = config.attention
        io_beats = a.io_beats_per_head
        return (sum(pass_key_counts(a, position, tokens)) * a.beats_per_key
                + tokens * (a.heads + 2 * a.kv_heads) * io_beats + tokens * a.heads * io_beats)
    if name == "NORM":
        # The block's own bound: a vector's codes need its peak, so they leave after its
        # last beat is in (docs/elementwise.md); the next vector comes in meanwhile. A
        # NORM of the next LINEAR's output takes its values as that LINEAR writes them:
        # its own are its gains' words, read before, and its last vector's codes after.
        if instruction["flags"] & FLAG_NEXT:
            return -(-instruction["beats"] // 2) + instruction["beats"]
        return instruction["beats"] * (tokens + 1)
    if name in ("LOAD", "STORE", "EMBED"):
        return instruction["beats"] * tokens
    return 0


def measure(accelerator, ids, config, position):
    """One run: its logits, its counters and the ideal per kind."""
    logits = accelerator.prefill(ids)
    counters = accelerator.counters()
    ideal = {}
    # prefill's runs take the program without a device head (the host's head computes
    # the logits checked): the program's instructions up to the hidden states' STORE.
    ran = accelerator.compiled.instructions[:program_length(config, head=False) - 1]
    for instruction in ran:
        name = NAMES[instruction["opcode"]]
        if name in COUNTER_OF_OPCODE:
            key = COUNTER_OF_OPCODE[name]
            ideal[key] = ideal.get(key, 0) + ideal_cycles(instruction, config, position, len(ids))
    return logits, counters, ideal


class MeasuredRuns:
    """The accelerator as :func:`tritium.host.runtime.generate` drives it, one run at a
    time (a prompt in runs of up to ``max_tokens``), each run's counters and ideal
    recorded in :attr:`runs` with whether its logits match the golden model."""

    def __init__(self, accelerator, config, check):
        self.accelerator, self.config, self.check = accelerator, config, check
        self.runs = []

    @property
    def position(self) -> int:
        return self.accelerator.position

    @property
    def model_config(self):
        return self.accelerator.model_config

    def _run(self, ids, kind):
        position = self.accelerator.position
        logits, counters, ideal = measure(self.accelerator, ids, self.config, position)
        self.runs.append({"kind": kind, "position": position, "tokens": len(ids),
                          "matches_golden": self.check(ids, logits), "counters": counters,
                          "ideal": ideal})
        return logits

    def prefill(self, ids, logits="all"):
        # Every run's logits are measured and checked, whatever the caller asks for.
        step = self.config.max_tokens
        return np.concatenate([self._run(ids[start:start + step], "prefill")
                               for start in range(0, len(ids), step)])

    def decode(self, token):
        return self._run([token], "decode")[0]


def measure_head(accelerator, check, token) -> dict:
    """One decode step of ``token`` with the device's LM head: the run's cycles, its
    HEAD's cycles and the head's words (weight-port words counted in bus words), and
    whether its top-k equals the golden model's, rows and scores."""
    position = accelerator.position
    indices, scores = accelerator.prefill_top([token])
    counters = accelerator.counters()
    return {"position": position, "cycles": counters["cycles"],
            "head_cycles": counters["head_cycles"], "head_words": counters["head_words"],
            "choice": int(indices[0]),
            "matches_golden": check.top([token], indices, scores), "counters": counters}


def measure_steps(accelerator, check, token, steps) -> dict:
    """One run of ``steps`` greedy steps from ``token`` (``Accelerator.decode_greedy``):
    its cycles, per step, and whether its choices are the golden model's."""
    position = accelerator.position
    choices = accelerator.decode_greedy(token, steps)
    counters = accelerator.counters()
    return {"position": position, "steps": steps, "cycles": counters["cycles"],
            "cycles_per_step": round(counters["cycles"] / steps, 1),
            "matches_golden": check.steps(token, choices), "counters": counters}


def open_model(source, config):
    """The model to run: ``tiny`` or a path through the importers, or a named shape
    (``MODEL_PRESETS``) without shipped weights as random weights."""
    if source in MODEL_PRESETS and source != "tiny":
        return Model.random(MODEL_PRESETS[source], seed=0)
    return load_model(source)


def simulate(config, model, memory_model=None, prompt=16, decode=8, seed=0) -> dict:
    """Run ``prompt`` tokens and ``decode`` steps of ``model`` on the simulated top of
    ``config`` (on chip, or on ``memory_model``'s first ``config.memory_ports`` ports); the
    report of the module
    docstring, every run checked against golden."""
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    # Both transports send their build log to a file.
    transport = (BoardSimTransport(config, memory_model) if memory_model
                 else SimTransport(config))
    built = time.perf_counter()
    with Accelerator(config, transport, timeout=3600) as accelerator:
        accelerator.load(model)
        loaded = time.perf_counter()
        ids = rng.integers(0, model.config.vocab_size, prompt).tolist()
        check = GoldenCheck(model, config.head_weights)
        measured = MeasuredRuns(accelerator, config, check)
        # The prompt, then ``decode`` decode steps: ``decode + 1`` generated tokens.
        tokens = list(generate(measured, ids, decode + 1))
        runs = measured.runs
        device_head = (measure_head(accelerator, check, tokens[-1])
                       if config.head == "device" else None)
        # The decode steps again, as one run of as many steps, where the design chooses
        # its own tokens (docs/program.md, "Steps"): from the head run's choice.
        device_steps = None
        if design_steps(config) > 1 and decode > 1:
            device_steps = measure_steps(accelerator, check, device_head["choice"], decode)
    finished = time.perf_counter()

    def totals(kind):
        chosen = [r for r in runs if r["kind"] == kind]
        if not chosen:
            return None
        tokens = sum(r["tokens"] for r in chosen)
        cycles = sum(r["counters"]["cycles"] for r in chosen)
        ideal = sum(sum(r["ideal"].values()) for r in chosen)
        per_kind = {key: sum(r["counters"][key] for r in chosen)
                    for key in ("fetch_cycles", "move_cycles", "norm_cycles", "linear_cycles",
                                "attend_cycles")}
        ideal_kind = {key: sum(r["ideal"].get(key, 0) for r in chosen) for key in per_kind}
        return {"tokens": tokens, "cycles": cycles, "cycles_per_token": round(cycles / tokens, 1),
                "ideal_cycles": ideal, "fraction_of_ideal": round(ideal / cycles, 4),
                "cycles_by_kind": per_kind, "ideal_by_kind": ideal_kind,
                "projected_seconds_per_token": cycles / tokens / config.clock_hz}

    return {"kind": "simulated (cycle-accurate, Verilator); ideals derived",
            "config": config.name, "design": json.loads(config.to_json()),
            **as_built(config),
            "embedding": config.embedding,
            # Every run took the program without the LM head (its logits are the host's
            # head on the hidden states, checked against golden), as a host-head design's;
            # device_head is the one run with the device's head after them.
            "head": "host", "head_format": config.head_format, "device_head": device_head,
            "device_steps": device_steps,
            "model": model.config.name, "clock_hz": config.clock_hz,
            "memory_model": memory_model.name if memory_model else "onchip (in the top)",
            "memory_ports": config.memory_ports if memory_model else 1,
            "weight_port_words": config.weight_port_words if memory_model else 1,
            "attention_lanes": config.attention_lanes,
            "matches_golden": all(r["matches_golden"] for r in runs)
            and all(extra["matches_golden"] for extra in (device_head, device_steps) if extra),
            "prefill": totals("prefill"), "decode": totals("decode"),
            "wall_seconds": {"build_or_cache": round(built - started, 1),
                             "load_model": round(loaded - built, 1),
                             "runs": round(finished - loaded, 1)},
            "runs": runs}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(ACCELERATOR_PRESETS), default="tiny")
    parser.add_argument("--model", default=None,
                        help="tiny, a checkpoint path, or a named shape with random weights "
                             "(default: the design's model)")
    parser.add_argument("--memory", choices=sorted(MEMORY_MODELS), default=None,
                        help="run on this board memory model (default: on-chip memory)")
    parser.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    parser.add_argument("--decode", type=int, default=8, help="decode steps")
    parser.add_argument("--head-format", choices=HEAD_FORMATS, default=None,
                        help="the LM head's weights (default: the preset's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    config = ACCELERATOR_PRESETS[args.config]
    if args.head_format is not None:
        try:
            config = config.with_head_format(args.head_format)
        except ValueError as error:
            parser.error(str(error))
    if args.memory is None and config.memory_words > ONCHIP_WORDS_LIMIT:
        parser.error(f"design {config.name!r} has {config.memory_words} words of memory, too "
                     f"many to simulate on chip: give --memory (e.g. --memory kv260)")
    if args.prompt < 1 or args.decode < 0 or args.prompt + args.decode > config.model.max_context:
        parser.error(f"--prompt must be at least 1 and prompt + decode at most the context "
                     f"of {config.model.max_context} tokens")
    try:
        model = open_model(args.model or config.model.name, config)
        config.check_model(model.config)
    except (TritiumError, ValueError) as error:
        parser.error(str(error))
    memory = MEMORY_MODELS[args.memory] if args.memory else None
    report = simulate(config, model, memory, args.prompt, args.decode)
    if args.json:
        print(json.dumps(report))
    else:
        for kind in ("prefill", "decode"):
            t = report[kind]
            if t is None:
                continue
            print(f"{kind:8} {t['cycles_per_token']:>9} cycles/token, ideal "
                  f"{t['ideal_cycles'] / t['tokens']:.0f} ({t['fraction_of_ideal']:.1%} of "
                  f"the cycles), {t['projected_seconds_per_token'] * 1e3:.2f} ms/token at "
                  f"{config.clock_hz / 1e6:g} MHz")
        head = report["device_head"]
        if head is not None:
            print(f"HEAD ({report['head_format']}) {head['head_cycles']} cycles for "
                  f"{head['head_words']} words, {head['head_cycles'] / config.clock_hz * 1e3:.2f} "
                  f"ms at {config.clock_hz / 1e6:g} MHz")
        print(f"matches golden: {report['matches_golden']}; wall {report['wall_seconds']}")
    return 0 if report["matches_golden"] else 1


if __name__ == "__main__":
    sys.exit(main())
