"""Cycles of single instructions on the simulated top, next to the analytic model's.

    python bench/instructions.py --json                          # tiny design, on chip
    python bench/instructions.py --config kv260 --json           # its one-layer slice on HP0
    python bench/instructions.py --memory kv260 --json           # tiny's one-layer slice on HP0
    python bench/instructions.py --tokens 1,8 --positions 0,63,511

How the constants of ``host/performance.py`` (``CALIBRATION``) were calibrated: the
compiled model is loaded into the simulated top (Verilator), then for each instruction
of the program's first layer, its inputs (LOAD, and EMBED with device embedding), its
STORE of the hidden states and, with the head on the device, the output norm, HEAD
and the top-k's STORE, a program of that one instruction
and END is written over the program and run at each token count (and, for ATTEND, each
position; the KV cache holds whatever is there, which does not change the timing). A
NORM of the next LINEAR's output (``FLAG_NEXT``) is left out (alone, its run would end
with BAD_OPCODE), and that LINEAR is compared with its model without the norm's term;
the two together are measured by ``bench/layer.py`` and ``bench/e2e.py``. The
controller's counters of that run give the instruction's cycles, which are set next to
``estimate_run``'s figure for the same instruction. ``--config kv260`` simulates the
preset reduced to one layer (as ``bench/layer.py``) with random weights, its memory on
port HP0 of the ``kv260`` memory model; ``tiny`` keeps its memory on chip. Nothing is
asserted: docs/performance.md, "Calibration", has the figures. With ``--memory`` the
preset is reduced to one layer and its memory is port 0 of that board memory model.
"""

import argparse
import dataclasses
import json
import sys

from tritium.host.accelerator import Accelerator
from tritium.host.compiler import encode_instruction, instruction_words, layer_length
from tritium.host.importers import load_model
from tritium.host.model import Model
from tritium.host.performance import estimate_run
from tritium.host.sim_transport import BoardSimTransport, SimTransport
from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.hw.control.controller import COUNTER_OF_OPCODE
from tritium.hw.control.isa import FLAG_NEXT, OPCODES, REGISTERS
from tritium.hw.memory_model import MEMORY_MODELS

NAMES = {code: name for name, code in OPCODES.items()}


def design(name: str, memory: str):
    """(config, model, memory model name, transport factory) of ``--config`` and
    ``--memory``: the tiny design with its memory on chip, or a preset reduced to one
    layer on port 0 of a board memory model."""
    preset = ACCELERATOR_PRESETS[name]
    if memory == "onchip":
        if preset.memory_words > 2 ** 16:
            raise ValueError(f"{name}'s memory is too large to simulate on chip")
        return preset, load_model("tiny"), "onchip", lambda: SimTransport(preset)
    config = dataclasses.replace(preset, name=f"{name}-layer",
                                 model=dataclasses.replace(preset.model, layers=1))
    model = MEMORY_MODELS[memory]
    return (config, Model.random(config.model, seed=0), memory,
            lambda: BoardSimTransport(config, model))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("tiny", "kv260"), default="tiny")
    parser.add_argument("--memory", choices=sorted(MEMORY_MODELS), default=None,
                        help="onchip (tiny's default) or a board memory model (kv260's "
                             "default: kv260), which simulates a one-layer slice")
    parser.add_argument("--tokens", default=None, help="token counts (default 1, 2, max_tokens)")
    parser.add_argument("--positions", default="0,63", help="ATTEND positions (default 0,63)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        config, model, memory, transport = design(
            args.config, args.memory or ("onchip" if args.config == "tiny" else "kv260"))
    except ValueError as error:
        parser.error(str(error))
    tokens = sorted({int(t) for t in args.tokens.split(",")} if args.tokens
                    else {1, 2, config.max_tokens})
    positions = [int(p) for p in args.positions.split(",")]
    if not 1 <= min(tokens) <= max(tokens) <= config.max_tokens or min(positions) < 0 \
            or max(positions) + max(tokens) > config.attention.capacity:
        parser.error(f"tokens must lie in 1 .. {config.max_tokens} and positions + tokens "
                     f"within the KV cache's {config.attention.capacity}")
    step = instruction_words(config.data_width // 8) * config.data_width // 8
    end = encode_instruction(opcode="END").ljust(step, b"\0")
    rows = []
    with Accelerator(config, transport(), timeout=3600) as accelerator:
        compiled = accelerator.load(model)
        program = compiled.instructions
        tail = 1 + (3 if config.head == "device" else 0)   # STORE (NORM, HEAD, STORE)
        per_layer = layer_length(config)
        first_layer = len(program) - per_layer * config.model.layers - 1 - tail
        # The inputs, layer 0 and the tail, by their index in the program (and so in
        # the model's run of the same program).
        chosen = [*range(first_layer + per_layer),
                  *range(len(program) - 1 - tail, len(program) - 1)]
        for index in chosen:
            instruction = program[index]
            name = NAMES[instruction["opcode"]]
            if name == "NORM" and instruction["flags"] & FLAG_NEXT:
                continue        # alone it would end its run (BAD_OPCODE): see below
            code = encode_instruction(**instruction).ljust(step, b"\0")
            accelerator.link.write(compiled.program_address, code + end)
            for count in tokens:
                for position in positions if name == "ATTEND" else [0]:
                    accelerator.link.set(REGISTERS["position"], position)
                    accelerator.link.set(REGISTERS["tokens"], count)
                    status = accelerator.link.run()
                    counters = accelerator.counters()
                    model_run = estimate_run(config, memory, position, count)
                    estimate = model_run.instructions[index]
                    # A LINEAR whose output a NORM (FLAG_NEXT) norms runs alone here,
                    # without it: its model without that norm's term.
                    model_cycles = estimate.cycles - estimate.terms.get("norm", 0)
                    counter = COUNTER_OF_OPCODE[name]
                    rows.append({"instruction": index, "op": name, "flags": instruction["flags"],
                                 "beats": instruction["beats"], "blocks": instruction["blocks"],
                                 "tokens": count, "position": position, "status": status,
                                 "simulated": counters[counter],
                                 "model": round(model_cycles, 1),
                                 "terms": {k: round(v, 1) for k, v in estimate.terms.items()},
                                 "fetch": {"simulated": counters["fetch_cycles"],
                                           "model": round(2 * estimate.fetch, 1)}})
    report = {"kind": "simulated (Verilator) single instructions against the analytic model",
              "config": config.name, "memory_model": memory, "rows": rows}
    if args.json:
        print(json.dumps(report))
    else:
        for row in rows:
            print(f"{row['instruction']:>2} {row['op']:<6} tokens {row['tokens']} position "
                  f"{row['position']:>4}: simulated {row['simulated']:>8,}, model "
                  f"{row['model']:>10,.1f} ({row['model'] / row['simulated'] - 1:+.2%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
