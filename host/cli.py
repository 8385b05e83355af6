"""The ``tritium`` command line (docs/cli.md).

Bad input of any kind ends in one line on stderr, ``tritium: error: ...``, and exit
status 2; with ``--json`` stdout holds exactly one JSON object.
"""

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from tritium.boards import BOARDS, get_board
from tritium.boards.report import add_report_parser
from .errors import InputError, TritiumError

__all__ = ["main"]

DEMO_PROMPT = "Once upon a time"
DEMO_TOKENS = 96
EXIT_ERROR = 2


def _check_text(text: str, what: str) -> str:
    """A command-line string that must be text: one that is not valid UTF-8 reaches
    Python with its bad bytes as lone surrogates (surrogateescape); refuse it here."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        try:
            bad = f"byte 0x{text[exc.start].encode('utf-8', 'surrogateescape').hex()}"
        except UnicodeEncodeError:          # a lone surrogate not from a byte
            bad = f"U+{ord(text[exc.start]):04X}"
        raise InputError(f"{what} is not valid UTF-8 ({bad} at character "
                         f"{exc.start})") from None
    return text


def _check_host_config(args):
    """``--config`` is an accelerator config: host backends have none to use."""
    if getattr(args, "config", None) is not None and args.backend in HOST_BACKENDS:
        raise InputError(f"--config {args.config} applies only to device backends (sim, "
                         f"model, serial:PORT, zynq); --backend {args.backend} computes on "
                         f"the host and has no accelerator config")


def _output_file(text: str, what: str) -> Path:
    """An output file path, written exactly as given: not a directory, in a directory
    that exists. Checked before any model is loaded or run."""
    path = Path(text)
    if path.is_dir():
        raise InputError(f"{what} {text}: is a directory; give a file to write")
    if not path.parent.is_dir():
        raise InputError(f"{what} {text}: cannot write the logits there: directory "
                         f"{path.parent} does not exist")
    return path


def _load(source):
    from .importers import load_model
    from .tokenizer import load_tokenizer
    model = load_model(source)
    return model, load_tokenizer(source, model)


def _status(message):
    """A transient spinner on stderr when it is a terminal; nothing otherwise."""
    from contextlib import nullcontext
    if not sys.stderr.isatty():
        return nullcontext()
    from rich.console import Console
    return Console(stderr=True).status(message)


def _token_progress(what: str, total: int):
    """On a terminal, a transient bar on stderr, tokens done of ``total``; yields its
    ``progress(done, total)`` callback (None elsewhere)."""
    from contextlib import contextmanager

    @contextmanager
    def shown():
        if not sys.stderr.isatty():
            yield None
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn)
        with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TextColumn("tokens"),
                      TimeElapsedColumn(), console=Console(stderr=True),
                      transient=True) as bar:
            task = bar.add_task(what, total=total)
            yield lambda done, total: bar.update(task, completed=done, total=total)
    return shown()


HOST_BACKENDS = ("golden", "reference")
BACKEND_HELP = ("golden or reference (NumPy on the host), or a device: sim (the generated "
                "Verilog on Verilator), model (the software device), "
                "serial:PORT[@BAUD] (a board on its UART), zynq[:ADDRESS] (the KV260, "
                "from its ARM cores; ADDRESS: a reserved buffer, else PYNQ allocates one)")


def _accelerator_config(name):
    """A preset by name, or a config JSON file (as ``tritium generate`` writes)."""
    from tritium.hw.config import ACCELERATOR_PRESETS, AcceleratorConfig
    if name in ACCELERATOR_PRESETS:
        return ACCELERATOR_PRESETS[name]
    if name.endswith(".json"):
        try:
            config = AcceleratorConfig.from_json(Path(name).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None
        except RecursionError:
            raise InputError(f"{name}: not an accelerator config: JSON nested too "
                             f"deeply") from None
        except ValueError as exc:      # UnicodeDecodeError and JSONDecodeError too
            raise InputError(f"{name}: {str(exc).splitlines()[0]}") from None
        # The link's frame length, and INFO's report of it, are 16-bit (docs/link.md).
        if config.max_payload >= 2 ** 16:
            raise InputError(f"{name}: max_payload must be below 65536 (a 16-bit frame "
                             f"length), not {config.max_payload}")
        return config
    raise InputError(f"unknown accelerator config {name!r}; choose one of "
                     f"{', '.join(ACCELERATOR_PRESETS)} or a config .json file")


# The preset a board transport's bitstream is generated for by default (docs/boards.md);
# the device's design id is checked against it before anything is loaded.
_BOARD_BACKEND_CONFIGS = {"serial": "ulx3s", "zynq": "kv260"}


def _default_config(backend: str) -> str:
    """``--config``'s default: the board's preset for a board transport, else ``tiny``."""
    return _BOARD_BACKEND_CONFIGS.get(backend.partition(":")[0], "tiny")


class _Stream:
    """The generated text on stdout as it comes: the prompt with the first token (so
    that no spinner on the same terminal line can erase it), then each piece. Remembers
    whether the last character written ended a line, so that an error starts on a new
    one (:func:`_end_partial_line`)."""

    midline = False                     # stdout holds an unfinished line of generated text

    def __init__(self, prompt: str):
        self._prompt = prompt

    def write(self, text: str) -> None:
        text, self._prompt = self._prompt + text, ""
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            _Stream.midline = not text.endswith("\n")

    def end(self, text: str) -> None:
        self.write(text + "\n")


def _end_partial_line() -> None:
    """Before an error: end a half-written line of generated text on stdout."""
    if _Stream.midline:
        _Stream.midline = False
        try:
            sys.stdout.write("\n")
            sys.stdout.flush()
        except (OSError, _StdoutFailed):
            pass


def _build_progress(config):
    """On a terminal, a spinner with the elapsed time and the stage of the simulator's
    first build; yields the ``progress(stage)`` callback for :class:`SimTransport`."""
    from contextlib import contextmanager

    @contextmanager
    def shown():
        if not sys.stderr.isatty():
            yield None
            return
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(f"starting the simulator of accelerator {config.name!r}")
            yield lambda stage: bar.update(task, description=f"simulator of accelerator "
                                                             f"{config.name!r}: {stage}")
    return shown()


def _open_accelerator(args, config):
    """An :class:`Accelerator` on the transport ``--backend`` names (a first ``sim`` run
    builds the simulator, showing its stage and elapsed time on a terminal)."""
    from .accelerator import Accelerator
    from .transports import open_transport
    if args.backend == "sim":
        from .sim_transport import (check_build_tools, simulation_cache_dir,
                                    simulation_is_built)
        if not simulation_is_built(config):
            check_build_tools()
            print(f"tritium: building the simulator of accelerator {config.name!r} with "
                  f"Verilator (first run only, about 2-4 minutes; cached in "
                  f"{simulation_cache_dir(config)})", file=sys.stderr)
            with _build_progress(config) as progress:
                transport = open_transport(args.backend, config, progress=progress)
            return Accelerator(config, transport, timeout=600)
    with _status(f"starting the {args.backend} backend for accelerator {config.name!r}"):
        return Accelerator(config, open_transport(args.backend, config), timeout=600)


def _generate(args, model, tokenizer, *, stream: bool):
    """Greedy generation on ``--backend``, through :func:`runtime.generate`: on the host
    (a :class:`Session`), or on a device (an :class:`Accelerator`, every run's logits
    checked against the golden model; cycles from the device's counters)."""
    from contextlib import ExitStack
    from .runtime import GoldenCheck, Session, check_generation, generate, make_backend
    on_device = args.backend not in HOST_BACKENDS
    config = None
    if on_device:
        from .compiler import check_model
        config = _accelerator_config(args.config or _default_config(args.backend))
        check_model(model, config)              # before any device or simulator is opened
    prompt_ids = tokenizer.encode(args.prompt)
    # The prompt and -n against the context, also before anything is opened or built.
    check_generation(prompt_ids, args.tokens, model.config)
    text_stream, pieces, ids = tokenizer.stream_decoder(), [], []
    out = _Stream(args.prompt) if stream else None
    with ExitStack() as resources:
        if on_device:
            runner = resources.enter_context(_open_accelerator(args, config))
            with _status(f"loading {model.config.name} onto {args.backend}"):
                runner.load(model)
            check = GoldenCheck(model)
        else:
            runner, check = Session(make_backend(args.backend, model)), None
        start = time.perf_counter()
        tokens = generate(runner, prompt_ids, args.tokens, check)
        with _status(f"prefilling {len(prompt_ids)} tokens on {args.backend}"):
            first = next(tokens)                    # the prefill runs here
        prefill_runs = len(runner.run_cycles) if on_device else 0
        first_token_at = time.perf_counter()
        for token in itertools.chain([first], tokens):
            ids.append(token)
            pieces.append(text_stream.push(token))
            if out:
                out.write(pieces[-1])
        decode_seconds = time.perf_counter() - first_token_at
    pieces.append(text_stream.flush())
    if out:
        out.end(pieces[-1])
    result = {"model": model.config.name, "backend": args.backend}
    if on_device:
        result["config"] = config.name
    result.update({"prompt": args.prompt, "prompt_tokens": len(prompt_ids),
                   "text": "".join(pieces), "tokens": ids})
    if on_device:
        prefill_cycles = sum(runner.run_cycles[:prefill_runs])
        decode_cycles = runner.run_cycles[prefill_runs:]
        per_token = sum(decode_cycles) / len(decode_cycles) if decode_cycles else None
        result.update({
            "matches_golden": check.matches,
            "prefill_cycles": prefill_cycles,
            "decode_cycles": round(per_token, 1) if per_token else None,
            "decode_cycles_each": decode_cycles,
            "clock_hz": config.clock_hz,
            "projected_time_to_first_token_s": prefill_cycles / config.clock_hz,
            "projected_decode_tokens_per_s": round(config.clock_hz / per_token, 1)
            if per_token else None,
        })
    result.update({
        "time_to_first_token_s": round(first_token_at - start, 6),
        "decode_tokens_per_s": round((len(ids) - 1) / decode_seconds, 3)
        if len(ids) > 1 and decode_seconds > 0 else None,
    })
    return result


def _summary(result):
    rate = result["decode_tokens_per_s"]
    rate_text = f", {rate:.1f} tokens/s decode" if rate else ""
    text = (f"[{result['model']} on {result['backend']}: {result['prompt_tokens']} prompt "
            f"tokens, {len(result['tokens'])} generated, first token after "
            f"{result['time_to_first_token_s']:.3f} s{rate_text}]")
    if "prefill_cycles" in result:
        match = (f"every logit {'matches' if result['matches_golden'] else 'DIFFERS FROM'} "
                 f"the golden model")
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


def cmd_run(args):
    if args.tokens < 1:
        raise InputError(f"-n must be at least 1, not {args.tokens}")
    with _status(f"loading {args.model}"):
        model, tokenizer = _load(args.model)
    if args.json:
        result = _generate(args, model, tokenizer, stream=False)
        print(json.dumps(result))
    else:
        result = _generate(args, model, tokenizer, stream=True)
        print(_summary(result), file=sys.stderr)
    if result.get("matches_golden") is False:
        print("tritium: error: the accelerator's logits differ from the golden model's",
              file=sys.stderr)
        return 1


def cmd_demo(args):
    args.model, args.prompt, args.json = "tiny", DEMO_PROMPT, False
    what = ("the cycle-accurate simulation of the generated Verilog"
            if args.backend == "sim" else "the bit-exact integer model of the accelerator, "
            "on the host" if args.backend == "golden" else "the float64 model, on the host"
            if args.backend == "reference" else "the software device, through the link"
            if args.backend == "model" else "a device, through the link")
    print(f"tritium demo: the tiny BitNet model on the {args.backend!r} backend ({what})",
          file=sys.stderr)
    return cmd_run(args)


def _parse_token_list(text: str, vocab_size: int) -> np.ndarray:
    from .runtime import check_token_ids
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--tokens must be comma-separated integers, not {text!r}") from None
    # Range-check as Python integers: NumPy's int64 cannot hold every id typed.
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise InputError(f"token id {bad[0]} is out of range for a vocabulary of "
                         f"{vocab_size} (valid: 0..{vocab_size - 1})")
    return check_token_ids(np.array(ids, dtype=np.int64), vocab_size)


def cmd_eval(args):
    from .runtime import Session, check_window, make_backend, perplexity
    logits_path = _output_file(args.logits, "--logits") if args.logits else None
    model, tokenizer = _load(args.model)
    check_window(args.window, model.config)
    backend = make_backend(args.backend, model)
    if args.text is not None:
        path = Path(args.text)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not valid UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                             f"at offset {exc.start})") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read text ({exc.strerror or exc})") from None
        ids = tokenizer.encode(text)
        with _token_progress(f"perplexity on {args.backend}", len(ids)) as progress:
            ppl, count = perplexity(backend, ids, args.window, progress)
        result = {"model": model.config.name, "backend": args.backend, "text": str(path),
                  "perplexity": ppl, "tokens": count}
        print(json.dumps(result) if args.json else
              f"{model.config.name} on {args.backend}: perplexity {ppl:.4f} over {count} tokens")
        return
    ids = _parse_token_list(args.token_ids, model.config.vocab_size)
    logits = Session(backend).feed(ids)
    if logits_path is not None:
        try:
            with open(logits_path, "wb") as file:      # as given: np.save would add .npy
                np.save(file, logits)
        except OSError as exc:
            raise InputError(f"cannot write the logits to {args.logits}: "
                             f"{exc.strerror or exc}") from None
    result = {"model": model.config.name, "backend": args.backend, "positions": len(ids),
              "vocab": model.config.vocab_size, "logits": args.logits,
              "argmax": logits.argmax(axis=-1).tolist()}
    print(json.dumps(result) if args.json else
          f"logits of shape {logits.shape} written to {args.logits}" if args.logits else
          f"next-token argmax per position: {result['argmax']}")


def cmd_info(args):
    from .packer import PackedTensor
    from tritium.hw.config import TileConfig
    model, tokenizer = _load(args.model)
    cfg = model.config
    tile = TileConfig()
    packed_bits = sum(PackedTensor(b"", shape, tile).bits
                      for shape in cfg.linear_shapes().values()) * cfg.layers
    info = dataclasses.asdict(cfg)
    info.update({
        "ternary_weights": cfg.ternary_weights_per_layer * cfg.layers,
        "packed_weight_bits": packed_bits,
        "tokenizer": type(tokenizer).__name__,
    })
    if args.json:
        print(json.dumps(info))
        return
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")


def cmd_generate(args):
    """Write the Verilog of an accelerator config, with its config as JSON; with
    ``--board``, the board's whole design (docs/boards.md)."""
    if args.board is not None:
        return _generate_for_board(args)
    for flag in ("build", "program", "no_estimate"):
        if getattr(args, flag):
            raise InputError(f"--{flag.replace('_', '-')} needs --board "
                             f"(one of {', '.join(BOARDS)})")
    from tritium.hw.top import Top
    from tritium.hw.verilog import generate_verilog
    config = _accelerator_config(args.config or "tiny")
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {out}: {exc.strerror or exc}") from None
    toplevel = f"tritium_{config.name.replace('-', '_')}"
    with _status(f"generating the Verilog of accelerator {config.name!r}"):
        verilog = generate_verilog(Top(config), toplevel)
    (out / f"{toplevel}.v").write_text(verilog)
    (out / "config.json").write_text(config.to_json() + "\n")
    result = {"config": config.name, "toplevel": toplevel, "design_id": f"{config.design_id:08x}",
              "verilog": str(out / f"{toplevel}.v"), "bytes": len(verilog)}
    print(json.dumps(result) if args.json else
          f"wrote {result['verilog']} ({len(verilog)} bytes, design {result['design_id']}) "
          f"and {out / 'config.json'}")


def _generate_for_board(args):
    """``generate --board``: the board module writes, builds and programs."""
    board = get_board(args.board)
    config = _accelerator_config(args.config or board.config)
    module = board.load()
    options = {"build": args.build, "program": args.program}
    if args.no_estimate:
        if not board.estimate:
            raise InputError(f"--no-estimate: board {board.name!r} has no resource estimate "
                             f"step to skip (boards with one: "
                             f"{', '.join(name for name, b in BOARDS.items() if b.estimate)})")
        options["estimate_resources"] = False
    steps = ["writing", "building" if args.build else None,
             "programming" if args.program else None]
    with _status(f"{', '.join(step for step in steps if step)} {board.name} for "
                 f"accelerator {config.name!r}"):
        report = module.generate(config, Path(args.output), **options)
    if args.json:
        print(json.dumps(report))
        return
    print(f"{board.name}: accelerator {config.name!r} (design {report['design_id']}) "
          f"written to {args.output}")
    for line in _board_report_lines(report, args):
        print(line)


# What a board report's ``estimate.fit`` keys count (the KV260's XCK26).
_FIT_NAMES = {"luts": "LUTs", "ffs": "FFs", "bram": "BRAM36", "uram": "URAM",
              "dsp": "DSP48E2"}


def _board_report_lines(report, args):
    """The human-readable part of a board's generate report, from the keys it has:
    ``build`` (nextpnr figures, ULX3S), ``estimate`` (a yosys fit, KV260), ``bitstream``
    or ``vivado`` (Vivado's outputs or the command that makes them, KV260)."""
    build = report.get("build")
    if build and args.build:
        used = build["utilisation"]
        figures = ", ".join(f"{name} {used[key]['used']}/{used[key]['available']}"
                            for key, name in (("luts", "LUT4"), ("ffs", "FF"), ("ebr", "EBR"),
                                              ("dsp", "DSP")) if key in used)
        fmax = "; ".join(f"{clock} {f['achieved_mhz']} MHz (needs {f['target_mhz']})"
                         for clock, f in build["fmax"].items())
        yield (f"bitstream {Path(args.output) / build['bitstream']}: {figures}; Fmax {fmax} "
               f"(nextpnr); {sum(build['seconds'].values()):.0f} s")
    estimate = report.get("estimate")
    if estimate:
        fit = ", ".join(f"{_FIT_NAMES.get(key, key)} {entry['used']:,}/{entry['available']:,} "
                        f"({entry['percent']:g}%)" for key, entry in estimate["fit"].items())
        yield (f"fits {report.get('part', 'the device')} by the yosys estimate (before place "
               f"and route; {estimate['seconds']:.0f} s): {fit}")
    elif args.no_estimate:
        yield "resource estimate skipped (--no-estimate): the fit is unchecked"
    if isinstance(report.get("bitstream"), dict):
        yield "Vivado wrote " + ", ".join(report["bitstream"].values())
    elif "vivado" in report:
        yield f"bitstream: run `{report['vivado']}` where Vivado is installed"
    if report.get("programmed"):
        yield f"programmed: {report['programmed']}"


def cmd_boards(args):
    """Every supported board: what it is, its toolchain, default config, what is verified."""
    boards = [{key: value for key, value in dataclasses.asdict(board).items() if key != "module"}
              for board in BOARDS.values()]
    if args.json:
        print(json.dumps({"boards": boards}))
        return
    for board in boards:
        print(f"{board['name']}: {board['description']}\n"
              f"  toolchain: {board['toolchain']}\n"
              f"  default config: {board['config']}\n"
              f"  verified: {board['verified']}")


def _contexts(text):
    """``--context``: comma-separated positive integers."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise InputError(f"--context takes comma-separated positive integers (e.g. "
                         f"64,512,1024), not {text!r}")
    return values


def _plot_path(text):
    """``--plot``: a .png file to write, in a directory that exists; matplotlib present."""
    path = Path(text)
    if path.is_dir():
        raise InputError(f"--plot {text}: is a directory; give a .png file to write")
    if path.suffix.lower() != ".png":
        raise InputError(f"--plot {text}: the plot is a PNG; give a path ending in .png")
    if not path.parent.is_dir():
        raise InputError(f"--plot {text}: directory {path.parent} does not exist")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install -e \".[plots]\"") from None
    return path


def cmd_estimate(args):
    """The analytic performance model of a model on a board (docs/performance.md)."""
    from .importers import read_model_config
    from .performance import (board_setup, format_projection, plot_projection, project,
                              recorded_cases)
    contexts = _contexts(args.context) if args.context is not None else None
    plot = _plot_path(args.plot) if args.plot is not None else None
    board = get_board(args.board)
    model = read_model_config(args.model)
    config = _accelerator_config(args.config) if args.config is not None else None
    try:
        setup = board_setup(model, board, config)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    limit = min(model.max_context, setup.config.attention.capacity)
    if contexts and max(contexts) > limit:
        raise InputError(f"--context {max(contexts)} is beyond the maximum context of "
                         f"{limit} tokens of model {model.name!r} on accelerator "
                         f"{setup.config.name!r}")
    prompts = [p for p in (64, 128) if p <= limit]
    try:
        result = project(setup, model, contexts, prompts, simulated=recorded_cases())
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if plot is not None:
        try:
            plot_projection(result, plot)
        except OSError as exc:
            raise InputError(f"--plot {args.plot}: cannot write ({exc.strerror or exc})") from None
        result["plot"] = str(plot)
    print(json.dumps(result) if args.json else format_projection(result))


def _parser():
    parser = argparse.ArgumentParser(
        prog="tritium", description="FPGA accelerators for ternary (BitNet b1.58) LLMs.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="generate text with the shipped tiny model")
    # The demo runs on the simulated hardware; --backend golden is the quick host-only one.
    demo.add_argument("--backend", default="sim", help=BACKEND_HELP)
    demo.add_argument("--config", default=None,
                      help="accelerator config for device backends (default tiny)")
    demo.add_argument("-n", dest="tokens", type=int, default=DEMO_TOKENS,
                      help=f"tokens to generate (default {DEMO_TOKENS})")
    demo.set_defaults(func=cmd_demo)

    run = commands.add_parser("run", help="prefill a prompt and decode tokens")
    run.add_argument("--model", required=True, help="'tiny', or a .npz/.gguf/HF directory")
    run.add_argument("--backend", default="golden", help=BACKEND_HELP)
    run.add_argument("--config", default=None,
                     help="accelerator config for device backends (default: ulx3s for "
                          "serial:, kv260 for zynq, else tiny)")
    run.add_argument("--prompt", required=True)
    run.add_argument("-n", dest="tokens", type=int, default=32, help="tokens to generate")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.set_defaults(func=cmd_run)

    evaluate = commands.add_parser("eval", help="perplexity of a text, or logits of tokens")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--backend", default="golden", choices=["golden", "reference"])
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="a UTF-8 text file: report its perplexity")
    source.add_argument("--tokens", dest="token_ids",
                        help="comma-separated token ids: compute logits for every position")
    evaluate.add_argument("--logits", help="with --tokens: write the logits (.npy)")
    evaluate.add_argument("--window", type=int, default=None,
                          help="tokens per perplexity window (default: the context)")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=cmd_eval)

    info = commands.add_parser("info", help="show a model's configuration")
    info.add_argument("--model", required=True)
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)

    generate = commands.add_parser(
        "generate", help="write the Verilog of an accelerator config, or a board's design")
    generate.add_argument("--config", default=None,
                          help="accelerator preset or a config .json file (default: tiny, "
                               "or the board's preset with --board)")
    generate.add_argument("--board", default=None,
                          help="a board from `tritium boards`: write its board top, "
                               "constraints and build script")
    generate.add_argument("--build", action="store_true",
                          help="with --board: run the board's toolchain (bitstream, report)")
    generate.add_argument("--program", action="store_true",
                          help="with --board: load the bitstream into the board")
    generate.add_argument("--no-estimate", action="store_true",
                          help="with --board kv260: skip the yosys resource estimate and "
                               "fit check (about 16 minutes for the kv260 preset)")
    generate.add_argument("-o", dest="output", required=True, help="output directory")
    generate.add_argument("--json", action="store_true")
    generate.set_defaults(func=cmd_generate)

    estimate = commands.add_parser(
        "estimate", help="project a model's speed on a board (the analytic performance model)")
    estimate.add_argument("--model", required=True,
                          help="tiny, bitnet-b1.58-large, bitnet-b1.58-2b-4t or a checkpoint "
                               "path (only its shape is read)")
    estimate.add_argument("--board", required=True, help="a board from `tritium boards`")
    estimate.add_argument("--config", default=None,
                          help="accelerator preset or config .json (default: the board's "
                               "preset, or its units resized to the model if it cannot hold it)")
    estimate.add_argument("--context", default=None,
                          help="decode contexts, comma-separated (default 64,512,1024,2048 up "
                               "to the model's maximum)")
    estimate.add_argument("--json", action="store_true", help="print one JSON object")
    estimate.add_argument("--plot", default=None,
                          help="write a PNG of the time per token against the memory roofline "
                               "(needs matplotlib: the plots extra)")
    estimate.set_defaults(func=cmd_estimate)

    boards = commands.add_parser("boards", help="list the supported boards")
    boards.add_argument("--json", action="store_true", help="print one JSON object")
    boards.set_defaults(func=cmd_boards)

    add_report_parser(commands)
    return parser


class _StdoutFailed(Exception):
    """stdout could not be written: a closed pipe, a full disk."""


class _GuardedStdout:
    """sys.stdout while a command runs: a failed write or flush raises _StdoutFailed,
    so that it is told apart from every other OSError."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise _StdoutFailed(exc.strerror or str(exc)) from None

    def flush(self):
        try:
            self._stream.flush()
        except OSError as exc:
            raise _StdoutFailed(exc.strerror or str(exc)) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _silence_stdout(stream):
    """Point ``stream``'s descriptor at /dev/null, so that the interpreter's flush of
    what is still buffered cannot fail again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass                        # not a real file (a test's capture): nothing to do


def main(argv=None):
    args = _parser().parse_args(argv)
    _Stream.midline = False
    stdout = sys.stdout
    sys.stdout = _GuardedStdout(stdout)
    try:
        if getattr(args, "window", None) is not None and args.window < 2:
            raise InputError(f"--window must be at least 2, not {args.window}")
        if getattr(args, "logits", None) and args.text is not None:
            raise InputError("--logits goes with --tokens, not --text")
        if getattr(args, "prompt", None) is not None:
            _check_text(args.prompt, "--prompt")
        if getattr(args, "backend", None) is not None:
            _check_host_config(args)
        code = args.func(args)
        sys.stdout.flush()          # a full disk or closed pipe shows here, not at exit
    except TritiumError as exc:
        _end_partial_line()
        print(f"tritium: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        _end_partial_line()
        return 130
    except _StdoutFailed as exc:
        _Stream.midline = False
        _silence_stdout(stdout)
        print(f"tritium: error: cannot write to stdout: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        sys.stdout = stdout
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
