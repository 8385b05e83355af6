"""The ``tritium`` command line (docs/cli.md).

The top of the layers: the one place that joins the host (``host/``) and the boards
(``boards/``), which never import each other. Each command is a
:class:`~tritium.cli.command.Command` in :data:`COMMANDS`; this module builds the parser
from them and turns every failure into one line on stderr, ``tritium: error: ...``, and
exit status 2. With ``--json`` stdout holds exactly one JSON object.
"""

import argparse
import sys

from tritium.host.errors import TritiumError
from .command import HelpFormatter
from .console import GuardedStdout, StdoutFailed, TextStream, end_partial_line, silence_stdout
from .estimate import EstimateCommand
from .evaluate import EvalCommand, InfoCommand
from .hardware import BoardsCommand, GenerateCommand, ReportCommand
from .run import DemoCommand, RunCommand

__all__ = ["COMMANDS", "EXIT_ERROR", "parser", "execute", "main"]

EXIT_ERROR = 2
COMMANDS = (DemoCommand(), RunCommand(), EvalCommand(), InfoCommand(), GenerateCommand(),
            EstimateCommand(), BoardsCommand(), ReportCommand())


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as installed
    try:
        return installed("tritium")
    except PackageNotFoundError:            # run from a source tree without installing
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="tritium", formatter_class=HelpFormatter,
        description="FPGA accelerators for ternary (BitNet b1.58) LLMs.")
    top.add_argument("--version", action="version", version=f"tritium {version()}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, formatter_class=HelpFormatter,
                                  description=command.description or command.help)
        command.arguments(sub)
        if command.json:
            sub.add_argument("--json", action="store_true",
                             help="print the result as one JSON object on stdout")
        sub.set_defaults(run=command)
    return top


def execute(args) -> int:
    """Run the command ``args`` were parsed for: check, run, show; its exit status.
    Errors propagate (:func:`main` turns them into one line)."""
    command = args.run
    command.check(args)
    result = command.run(args)
    command.show(result, args)
    return command.exit_status(result)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    TextStream.midline = False
    stdout = sys.stdout
    sys.stdout = GuardedStdout(stdout)
    try:
        code = execute(args)
        sys.stdout.flush()          # a full disk or closed pipe shows here, not at exit
    except TritiumError as exc:
        end_partial_line()
        print(f"tritium: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        end_partial_line()
        return 130
    except StdoutFailed as exc:
        TextStream.midline = False
        silence_stdout(stdout)
        print(f"tritium: error: cannot write to stdout: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        sys.stdout = stdout
    return code
