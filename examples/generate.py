"""Prefill a prompt and decode tokens as they come, on the host or on an accelerator.

    python examples/generate.py                          # tiny model, the software device
    python examples/generate.py --backend golden         # the golden model, on the host
    python examples/generate.py --backend sim            # the generated Verilog, simulated
    python examples/generate.py --backend sim --prompt "The cat" -n 40

The same loop (``tritium.host.runtime.generate``) drives every backend: ``golden`` and
``reference`` compute on the host; ``model`` (the software device, which answers the
link's frames), ``sim`` (Verilator running the generated Verilog) and, on boards, their
serial or Zynq transports are devices behind an :class:`Accelerator`, whose every run
is checked against the golden model.
"""

import argparse

from tritium.host.accelerator import Accelerator
from tritium.host.importers import load_model
from tritium.host.runtime import BACKENDS, GoldenCheck, Session, generate, make_backend
from tritium.host.tokenizer import load_tokenizer
from tritium.host.transports import open_transport
from tritium.hw.config import ACCELERATOR_PRESETS


def stream(tokens, tokenizer, prompt):
    """Print the prompt, then each token's text as it comes."""
    text = tokenizer.stream_decoder()
    print(prompt, end="", flush=True)
    for token in tokens:
        print(text.push(token), end="", flush=True)
    print(text.flush())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="model",
                        help="golden or reference (host), or model, sim, serial:PORT, ...")
    parser.add_argument("--config", default="tiny", choices=sorted(ACCELERATOR_PRESETS))
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--prompt", default="Once upon a time")
    parser.add_argument("-n", dest="tokens", type=int, default=24)
    args = parser.parse_args()

    model = load_model(args.model)
    tokenizer = load_tokenizer(args.model, model)
    prompt = tokenizer.encode(args.prompt)
    if args.backend in BACKENDS:                        # on the host
        session = Session(make_backend(args.backend, model))
        # Ends early at the model's end-of-sequence token, if its tokenizer names one.
        stream(generate(session, prompt, args.tokens, eos_ids=tokenizer.eos_ids), tokenizer,
               args.prompt)
        print(f"[{args.backend} on the host; position {session.position}]")
        return
    config = ACCELERATOR_PRESETS[args.config]
    with Accelerator(config, open_transport(args.backend, config), timeout=600) as device:
        device.load(model)                              # weights travel once per model
        check = GoldenCheck(model, config.head_weights)  # every run against the golden model
        # Prefill in runs of up to max_tokens tokens, then one decode run per token.
        stream(device.generate(prompt, args.tokens, check, tokenizer.eos_ids), tokenizer,
               args.prompt)
        cycles = device.run_cycles
        print(f"[{len(cycles)} runs, {sum(cycles)} cycles; position {device.position}; "
              f"matches golden: {check.matches}; counters {device.counters()}]")


if __name__ == "__main__":
    main()
