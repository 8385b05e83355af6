"""``tritium run`` and ``tritium demo``: greedy generation on any backend (docs/cli.md)."""

import itertools
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from tritium.host.errors import InputError
from .command import Command
from .console import TextStream, build_progress, count_progress, status
from .options import (add_accelerator_config, add_backend, add_i2s_layout, add_model, check_text,
                      device_config)

__all__ = ["RunCommand", "DemoCommand"]

STOP_REASONS = {"eos": " (end of sequence)", "stop_string": " (a --stop string)",
                "max_tokens": ""}
DEMO_PROMPT = "Once upon a time"
DEMO_TOKENS = 96
DEVICE_TIMEOUT = 600          # seconds a device may take for one RUN (a long run on a
#                               simulated top); WRITE and READ get host.link.FRAME_TIMEOUT,
#                               INFO, GET and SET host.link.SHORT_TIMEOUT


def load(source, i2s_layout=None, tokenizer_needed=True, progress=None):
    """A model and its tokenizer, from a name or a path; without ``tokenizer_needed``,
    a model that has none comes with None. A checkpoint's tokenizer is found from the
    model's shape alone, so a bad one is refused before the weights load.
    ``progress(done, total)`` hears the layers read (``load_model``)."""
    from tritium.host.importers import load_model, read_model_config
    from tritium.host.tokenizer import find_tokenizer, load_tokenizer
    find = load_tokenizer if tokenizer_needed else find_tokenizer
    if Path(source).exists():
        tokenizer = find(source, read_model_config(source))
        return load_model(source, i2s_layout, progress), tokenizer
    model = load_model(source, i2s_layout, progress)   # a preset, or the error naming it
    return model, find(source, model)


def open_accelerator(backend: str, config):
    """An :class:`Accelerator` on the transport ``backend`` names (a first ``sim`` run
    builds the simulator, showing its stage and elapsed time on a terminal)."""
    from tritium.host.accelerator import Accelerator
    from tritium.host.transports import open_transport
    if backend == "sim":
        from tritium.host.sim_transport import (check_build_tools, simulation_cache_dir,
                                                simulation_is_built)
        if not simulation_is_built(config):
            check_build_tools()
            print(f"tritium: building the simulator of accelerator {config.name!r} with "
                  f"Verilator (first run only, about 2-4 minutes; cached in "
                  f"{simulation_cache_dir(config)})", file=sys.stderr)
            with build_progress(f"simulator of accelerator {config.name!r}") as progress:
                transport = open_transport(backend, config, progress=progress)
            return Accelerator(config, transport, timeout=DEVICE_TIMEOUT)
    with status(f"starting the {backend} backend for accelerator {config.name!r}"):
        return Accelerator(config, open_transport(backend, config), timeout=DEVICE_TIMEOUT)


def generate_text(args, model, tokenizer, config, *, stream: bool) -> dict:
    """Greedy generation on ``--backend``, through :func:`tritium.host.runtime.generate`:
    on the host (a :class:`Session`), or on a device (an :class:`Accelerator`, every
    run's logits, or with the head on the device its top-k, checked against the golden
    model; cycles from the device's counters)."""
    from tritium.host.runtime import (GoldenCheck, Session, StopStrings, check_generation,
                                      generate, make_backend)
    on_device = config is not None
    if on_device:
        from tritium.host.compiler import check_model
        check_model(model, config)              # before any device or simulator is opened
    prompt_ids = tokenizer.encode(args.prompt)
    # The prompt and -n against the context, also before anything is opened or built.
    check_generation(prompt_ids, args.tokens, model.config)
    eos_ids = frozenset() if args.ignore_eos else tokenizer.eos_ids
    text, pieces, ids = StopStrings(tokenizer.stream_decoder(), args.stop), [], []
    out = TextStream(args.prompt) if stream else None
    with ExitStack() as resources:
        if on_device:
            runner = resources.enter_context(open_accelerator(args.backend, config))
            with status(f"loading {model.config.name} onto {args.backend}"):
                runner.load(model)
            # Without --no-check every run is compared with the golden model.
            check = None if getattr(args, "no_check", False) else GoldenCheck(
                model, config.head_weights)
        else:
            with count_progress(f"preparing {model.config.name} on {args.backend}",
                                "layers") as progress:
                runner, check = Session(make_backend(args.backend, model, progress)), None
        link = runner.link if on_device else None
        marks = [_link_mark(link, check)]
        start = time.perf_counter()
        tokens = generate(runner, prompt_ids, args.tokens, check, eos_ids)
        with status(f"prefilling {len(prompt_ids)} tokens on {args.backend}"):
            first = next(tokens)                    # the prefill runs here
        prefill_runs = len(runner.run_cycles) if on_device else 0
        first_token_at = time.perf_counter()
        marks.append(_link_mark(link, check))
        for token in itertools.chain([first], tokens):
            ids.append(token)
            if token in eos_ids:                # ends the text, as llama.cpp, unprinted
                break
            pieces.append(text.push(token))
            if out:
                out.write(pieces[-1])
            if text.stopped:
                break
        decode_seconds = time.perf_counter() - first_token_at
        marks.append(_link_mark(link, check))
    pieces.append(text.finish())
    if out:
        out.end(pieces[-1])
    result = {"model": model.config.name, "backend": args.backend}
    if on_device:
        result.update({"config": config.name, "head": config.head,
                       "head_format": config.head_format})
    stop = "stop_string" if text.stopped else "eos" if ids[-1] in eos_ids else "max_tokens"
    result.update({"prompt": args.prompt, "prompt_tokens": len(prompt_ids),
                   "text": "".join(pieces), "tokens": ids, "stop": stop})
    if on_device:
        prefill_cycles = sum(runner.run_cycles[:prefill_runs])
        decode_cycles = runner.run_cycles[prefill_runs:]
        # A run of several steps decodes a token a step (Accelerator.decode_greedy).
        decode_steps = sum(runner.run_steps[prefill_runs:])
        per_token = sum(decode_cycles) / decode_steps if decode_cycles else None
        result.update({
            "matches_golden": check.matches if check is not None else None,
            "prefill_cycles": prefill_cycles,
            "decode_cycles": round(per_token, 1) if per_token else None,
            "decode_cycles_each": decode_cycles,
            "decode_steps_each": runner.run_steps[prefill_runs:],
            "clock_hz": config.clock_hz,
            "projected_time_to_first_token_s": prefill_cycles / config.clock_hz,
            "projected_decode_tokens_per_s": round(config.clock_hz / per_token, 1)
            if per_token else None,
        })
        result.update(_link_figures(marks, len(prompt_ids), decode_steps, decode_seconds))
    result.update({
        "time_to_first_token_s": round(first_token_at - start, 6),
        "decode_tokens_per_s": round((len(ids) - 1) / decode_seconds, 3)
        if len(ids) > 1 and decode_seconds > 0 else None,
    })
    return result


def _link_mark(link, check):
    """The link's bytes and the seconds spent waiting for the device or checking its
    logits, now (None without a device)."""
    if link is None:
        return None
    checking = check.seconds if check is not None else 0.0
    return (link.sent_bytes + link.received_bytes, link.wait_seconds + checking)


def _link_figures(marks, prompt_tokens: int, decode_steps: int, decode_seconds: float) -> dict:
    """Link bytes of the prefill and per decode token (both ways, frames' ENDs included),
    and the host's seconds per decode token: the decode loop's wall time minus the time
    spent waiting for the device's replies and checking its logits against the golden
    model. (With the software device, ``model``, the device computes inside the host's
    send, so its work counts as the host's.)"""
    (start, _), (prefilled, waited), (end, waited_end) = marks
    figures = {"link_bytes_prefill": prefilled - start,
               "link_bytes_per_prompt_token": round((prefilled - start) / prompt_tokens, 1),
               "link_bytes_per_decode_token": None, "host_seconds_per_decode_token": None}
    if decode_steps:
        figures["link_bytes_per_decode_token"] = round((end - prefilled) / decode_steps, 1)
        figures["host_seconds_per_decode_token"] = round(
            (decode_seconds - (waited_end - waited)) / decode_steps, 6)
    return figures


def summary(result: dict) -> str:
    """The lines on stderr after the generated text: speed, cycles, golden agreement."""
    rate = result["decode_tokens_per_s"]
    rate_text = f", {rate:.1f} tokens/s decode" if rate else ""
    why = STOP_REASONS[result["stop"]]
    text = (f"[{result['model']} on {result['backend']}: {result['prompt_tokens']} prompt "
            f"tokens, {len(result['tokens'])} generated{why}, first token after "
            f"{result['time_to_first_token_s']:.3f} s{rate_text}]")
    if "prefill_cycles" in result:
        checked = "top-k" if result.get("head") == "device" else "logit"
        match = (f"every {checked} {'matches' if result['matches_golden'] else 'DIFFERS FROM'} "
                 f"the golden model" if result["matches_golden"] is not None
                 else "not checked against the golden model")
        if not result["prefill_cycles"]:           # the software device model has no clock
            return text + f"\n[{result['backend']}: no cycle counters; {match}]"
        mhz = result["clock_hz"] / 1e6
        decode = (f", {result['decode_cycles']:.0f} cycles per decode token "
                  f"({result['projected_decode_tokens_per_s']} tokens/s)"
                  if result["decode_cycles"] else "")
        # Only the sim backend simulates; a board's counters count real cycles.
        source = "simulated" if result["backend"] == "sim" else "device cycle counters"
        text += (f"\n[{source} at {mhz:g} MHz: prefill {result['prefill_cycles']} cycles "
                 f"({result['projected_time_to_first_token_s'] * 1e3:.2f} ms){decode}; "
                 f"{match}]")
    return text


class RunCommand(Command):
    name = "run"
    help = "prefill a prompt and decode tokens"
    description = ("Greedy generation: the prompt's tokens are prefilled, then up to -n "
                   "tokens decoded, ending early at the model's end-of-sequence token (unless "
                   "--ignore-eos) or a --stop string. On a device backend every run's logits "
                   "(with the head on the device, its top-k) are checked against the golden "
                   "model, unless --no-check; the exit status is 1 if any differ.")

    def arguments(self, parser):
        add_model(parser)
        add_i2s_layout(parser)
        add_backend(parser, default="golden")
        add_accelerator_config(parser, "ulx3s for serial:, kv260 for zynq, else tiny")
        parser.add_argument("--prompt", required=True, help="the text to continue")
        parser.add_argument("-n", dest="tokens", type=int, default=32,
                            help="tokens to generate at most")
        parser.add_argument("--stop", action="append", default=[], metavar="STRING",
                            help="stop when the generated text contains STRING, which is "
                                 "cut off (repeatable)")
        parser.add_argument("--ignore-eos", action="store_true",
                            help="go on past the model's end-of-sequence token")
        parser.add_argument("--no-check", action="store_true",
                            help="on a device, skip the golden comparison: greedy decoding "
                                 "then reads the device head's argmax alone, one word a "
                                 "token (what a deployment does)")

    def check(self, args):
        check_text(args.prompt, "--prompt")
        for stop in args.stop:
            if not check_text(stop, "--stop"):
                raise InputError("--stop needs a non-empty string")
        if args.tokens < 1:
            raise InputError(f"-n must be at least 1, not {args.tokens}")
        args.accelerator = device_config(args)

    def run(self, args):
        with count_progress(f"loading {args.model}", "layers") as progress:
            model, tokenizer = load(args.model, args.i2s_layout, progress=progress)
        return generate_text(args, model, tokenizer, args.accelerator, stream=not args.json)

    def show(self, result, args):
        # The text went to stdout as it came; what is said about it goes to stderr.
        if args.json:
            print(json.dumps(result))
        else:
            print(summary(result), file=sys.stderr)

    def exit_status(self, result):
        if result.get("matches_golden") is False:
            print("tritium: error: the accelerator's results differ from the golden model's",
                  file=sys.stderr)
            return 1
        return 0


class DemoCommand(RunCommand):
    name = "demo"
    help = "generate text with the shipped tiny model"
    description = (f"Continue {DEMO_PROMPT!r} with the shipped tiny model, by default on "
                   f"the cycle-accurate simulation of the generated Verilog.")
    json = False

    def arguments(self, parser):
        # The demo runs on the simulated hardware; --backend golden is the quick host-only one.
        add_backend(parser, default="sim")
        add_accelerator_config(parser, "tiny")
        parser.add_argument("-n", dest="tokens", type=int, default=DEMO_TOKENS,
                            help="tokens to generate")

    def check(self, args):
        args.model, args.prompt, args.json, args.i2s_layout = "tiny", DEMO_PROMPT, False, None
        args.stop, args.ignore_eos = [], False
        super().check(args)

    def run(self, args):
        from tritium.host.runtime import BACKEND_DESCRIPTIONS
        from tritium.host.transports import transport_entry
        what = (BACKEND_DESCRIPTIONS.get(args.backend)
                or transport_entry(args.backend).description)
        print(f"tritium demo: the tiny BitNet model on the {args.backend!r} backend ({what})",
              file=sys.stderr)
        return super().run(args)
