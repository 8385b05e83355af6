"""``tritium estimate``: a model's speed on a board, from the analytic performance model
(docs/performance.md)."""

import dataclasses

from tritium.boards import get_board
from tritium.host.errors import InputError
from .command import Command
from .options import (accelerator_config, add_board, add_head_format, output_file,
                      with_head_format)

__all__ = ["EstimateCommand"]


def parse_contexts(text: str) -> list:
    """``--context``: comma-separated positive integers."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise InputError(f"--context takes comma-separated positive integers (e.g. "
                         f"64,512,1024), not {text!r}")
    return values


def plot_path(text: str):
    """``--plot``: a .png file to write, in a directory that exists; matplotlib present."""
    path = output_file(text, "--plot", "the plot", suffix=".png")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install -e \".[plots]\"") from None
    return path


class EstimateCommand(Command):
    name = "estimate"
    help = "project a model's speed on a board (the analytic performance model)"

    def arguments(self, parser):
        parser.add_argument("--model", required=True,
                            help="tiny, bitnet-b1.58-large, bitnet-b1.58-2b-4t or a checkpoint "
                                 "path (only its shape is read)")
        add_board(parser, required=True, help="the board")
        parser.add_argument("--config", default=None,
                            help="accelerator preset or config .json (default: the board's "
                                 "preset, or its units resized to the model if it cannot "
                                 "hold it)")
        add_head_format(parser)
        parser.add_argument("--context", default=None,
                            help="decode contexts, comma-separated (default 64,512,1024,2048 "
                                 "up to the model's maximum)")
        parser.add_argument("--steps", type=int, default=None,
                            help="greedy decode steps a run (default: the design's most, "
                                 "64 where the device looks up embeddings and scores the "
                                 "head, else 1; 1: a run, and the host's frames, per token)")
        parser.add_argument("--plot", default=None,
                            help="write a PNG of the time per token against the memory "
                                 "roofline (needs matplotlib: the plots extra)")

    def check(self, args):
        args.contexts = parse_contexts(args.context) if args.context is not None else None
        args.plot_path = plot_path(args.plot) if args.plot is not None else None
        args.board_entry = get_board(args.board)

    def run(self, args):
        from tritium.host.importers import read_model_config
        from tritium.host.performance import (board_setup, decode_steps, plot_projection,
                                              project, recorded_cases)
        model = read_model_config(args.model)
        config = accelerator_config(args.config) if args.config is not None else None
        try:
            setup = board_setup(model, args.board_entry, config)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        setup = dataclasses.replace(setup, config=with_head_format(setup.config, args.head_format))
        limit = min(model.max_context, setup.config.attention.capacity)
        if args.contexts and max(args.contexts) > limit:
            raise InputError(f"--context {max(args.contexts)} is beyond the maximum context "
                             f"of {limit} tokens of model {model.name!r} on accelerator "
                             f"{setup.config.name!r}")
        prompts = [p for p in (64, 128) if p <= limit]
        try:                # refused before the projection starts
            decode_steps(setup.config, args.steps)
        except ValueError as exc:
            raise InputError(f"--steps {args.steps}: {exc}") from None
        try:
            result = project(setup, model, args.contexts, prompts, simulated=recorded_cases(),
                             steps=args.steps)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if args.plot_path is not None:
            try:
                plot_projection(result, args.plot_path)
            except OSError as exc:
                raise InputError(f"--plot {args.plot}: cannot write "
                                 f"({exc.strerror or exc})") from None
            result["plot"] = str(args.plot_path)
        return result

    def render(self, result, args):
        from tritium.host.performance import format_projection
        yield format_projection(result)
