"""The commands about hardware: ``generate`` (Verilog, or a board's whole design),
``boards`` (the supported boards) and ``report`` (a block's resources by synthesis)."""

import dataclasses
import sys
from pathlib import Path

from tritium.boards import BOARDS, get_board
from tritium.host.errors import InputError, TritiumError
from .command import Command
from .console import status
from .options import accelerator_config, add_accelerator_config, add_board, with_head_format

__all__ = ["GenerateCommand", "BoardsCommand", "ReportCommand"]


class GenerateCommand(Command):
    name = "generate"
    help = "write the Verilog of an accelerator config, or a board's design"
    description = ("Write the Verilog of an accelerator config with its config as JSON; "
                   "with --board, the board's whole design: board top, constraints and "
                   "build script (docs/boards.md).")

    def arguments(self, parser):
        add_accelerator_config(parser, "tiny, or the board's preset with --board")
        add_board(parser, required=False,
                  help="write this board's board top, constraints and build script")
        parser.add_argument("--build", action="store_true",
                            help="with --board: run the board's toolchain (bitstream, report)")
        parser.add_argument("--program", action="store_true",
                            help="with --board: load the bitstream into the board")
        parser.add_argument("--no-estimate", action="store_true",
                            help="with --board kv260: skip the yosys resource estimate and "
                                 "fit check (about 16 minutes for the kv260 preset)")
        parser.add_argument("-o", dest="output", required=True, help="output directory")

    def check(self, args):
        if args.board is None:
            for flag in ("build", "program", "no_estimate"):
                if getattr(args, flag):
                    raise InputError(f"--{flag.replace('_', '-')} needs --board "
                                     f"(one of {', '.join(BOARDS)})")
            args.accelerator = with_head_format(accelerator_config(args.config or "tiny"),
                                                args.head_format)
            return
        board = get_board(args.board)
        if args.no_estimate and not board.estimate:
            raise InputError(f"--no-estimate: board {board.name!r} has no resource estimate "
                             f"step to skip (boards with one: "
                             f"{', '.join(name for name, b in BOARDS.items() if b.estimate)})")
        args.accelerator = with_head_format(accelerator_config(args.config or board.config),
                                            args.head_format)

    def run(self, args):
        if args.board is not None:
            return self._board_design(args)
        from tritium.hw.top import Top
        from tritium.hw.verilog import generate_verilog
        config, out = args.accelerator, Path(args.output)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create {out}: {exc.strerror or exc}") from None
        toplevel = f"tritium_{config.name.replace('-', '_')}"
        with status(f"generating the Verilog of accelerator {config.name!r}"):
            verilog = generate_verilog(Top(config), toplevel)
        (out / f"{toplevel}.v").write_text(verilog)
        (out / "config.json").write_text(config.to_json() + "\n")
        return {"config": config.name, "toplevel": toplevel,
                "design_id": f"{config.design_id:08x}", "verilog": str(out / f"{toplevel}.v"),
                "bytes": len(verilog)}

    @staticmethod
    def _options(args) -> dict:
        """What the board module's ``generate`` and ``summary_lines`` are told."""
        options = {"build": args.build, "program": args.program}
        if args.no_estimate:
            options["estimate_resources"] = False
        return options

    def _board_design(self, args):
        """The board module writes, builds and programs (boards/__init__.py)."""
        board, config = get_board(args.board), args.accelerator
        steps = ["writing", "building" if args.build else None,
                 "programming" if args.program else None]
        with status(f"{', '.join(step for step in steps if step)} {board.name} for "
                    f"accelerator {config.name!r}"):
            return board.load().generate(config, Path(args.output), **self._options(args))

    def render(self, result, args):
        if args.board is None:
            yield (f"wrote {result['verilog']} ({result['bytes']} bytes, design "
                   f"{result['design_id']}) and {Path(args.output) / 'config.json'}")
            return
        board = get_board(args.board)
        yield (f"{board.name}: accelerator {result['config']!r} (design {result['design_id']}) "
               f"written to {args.output}")
        yield from board.load().summary_lines(result, Path(args.output), **self._options(args))


class BoardsCommand(Command):
    name = "boards"
    help = "list the supported boards"

    def run(self, args):
        return {"boards": [{key: value for key, value in dataclasses.asdict(board).items()
                            if key != "module"} for board in BOARDS.values()]}

    def render(self, result, args):
        for board in result["boards"]:
            yield (f"{board['name']}: {board['description']}\n"
                   f"  toolchain: {board['toolchain']}\n"
                   f"  default config: {board['config']}\n"
                   f"  verified: {board['verified']}")


class ReportCommand(Command):
    name = "report"
    help = "resource estimates of a hardware block (yosys synthesis)"
    description = ("Synthesise a block with YoWASP Yosys for ECP5 and/or UltraScale+ and "
                   "print its resource counts (synthesis estimates, not place and route).")

    def arguments(self, parser):
        from tritium.boards.report import BLOCKS, DESIGNS, FAMILY_CHOICES, PRESETS
        parser.add_argument("--block", required=True, help=f"block to report: {', '.join(BLOCKS)}")
        parser.add_argument("--config", default="small",
                            help=f"preset ({', '.join(PRESETS)}) or a JSON object of "
                                 f"TLMMConfig fields, e.g. '{{\"tables\": 8, \"rows\": 8}}'")
        parser.add_argument("--family", default="all", help=", ".join(FAMILY_CHOICES))
        parser.add_argument("--designs", default=",".join(DESIGNS),
                            help=f"comma-separated subset of {', '.join(DESIGNS)}")
        parser.add_argument("--timeout", type=float, default=None,
                            help="seconds allowed per yosys run (default: no limit)")

    def check(self, args):
        from tritium.boards.report import BLOCKS, DESIGNS, FAMILY_CHOICES, parse_config
        if args.block not in BLOCKS:
            raise InputError(f"unknown block {args.block!r}: choose from {', '.join(BLOCKS)}")
        if args.family not in FAMILY_CHOICES:
            raise InputError(f"unknown FPGA family {args.family!r}: choose from "
                             f"{', '.join(FAMILY_CHOICES)}")
        if args.timeout is not None and not args.timeout > 0:
            raise InputError(f"--timeout must be positive, not {args.timeout}")
        args.tlmm, args.memory = parse_config(args.config)
        args.design_list = tuple(name.strip() for name in args.designs.split(",")
                                 if name.strip())
        if not args.design_list:
            raise InputError(f"--designs names none of {', '.join(DESIGNS)}")

    def run(self, args):
        from tritium.boards.report import report_block
        from tritium.boards.synth import FAMILIES, SynthesisError
        families = FAMILIES if args.family == "all" else (args.family,)
        try:
            return report_block(args.block, args.tlmm, families, memory=args.memory,
                                designs=args.design_list, timeout=args.timeout,
                                progress=lambda line: print(line, file=sys.stderr, flush=True))
        except SynthesisError as exc:
            raise TritiumError(str(exc)) from None

    def render(self, result, args):
        from tritium.boards.report import format_report
        yield format_report(result)
