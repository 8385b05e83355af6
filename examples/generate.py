"""Load a model onto an accelerator, prefill a prompt and decode tokens as they come.

    python examples/generate.py                          # tiny model, golden device model
    python examples/generate.py --backend sim            # the generated Verilog, simulated
    python examples/generate.py --backend sim --prompt "The cat" -n 40

The same code drives every backend: ``golden`` (a software model of the device that
answers the link's frames), ``sim`` (Verilator running the generated Verilog) and, on
boards, their serial or Zynq transports.
"""

import argparse

import numpy as np

from tritium.host.accelerator import Accelerator
from tritium.host.importers import load_model
from tritium.host.tokenizer import load_tokenizer
from tritium.host.transports import open_transport
from tritium.hw.config import ACCELERATOR_PRESETS


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="golden", help="golden, sim, ...")
    parser.add_argument("--config", default="tiny", choices=sorted(ACCELERATOR_PRESETS))
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--prompt", default="Once upon a time")
    parser.add_argument("-n", dest="tokens", type=int, default=24)
    args = parser.parse_args()

    config = ACCELERATOR_PRESETS[args.config]
    model = load_model(args.model)
    tokenizer = load_tokenizer(args.model, model)
    with Accelerator(config, open_transport(args.backend, config), timeout=600) as device:
        device.load(model)                              # weights travel once per model
        prompt = tokenizer.encode(args.prompt)
        logits = device.prefill(prompt)[-1]             # runs of up to max_tokens tokens
        text = tokenizer.stream_decoder()
        print(args.prompt, end="", flush=True)
        for step in range(args.tokens):
            token = int(np.argmax(logits))              # greedy
            print(text.push(token), end="", flush=True)
            if step + 1 < args.tokens:
                logits = device.decode(token)
        print(text.flush())
        cycles = device.run_cycles
        print(f"[{len(cycles)} runs, {sum(cycles)} cycles; position {device.position}; "
              f"counters {device.counters()}]")


if __name__ == "__main__":
    main()
