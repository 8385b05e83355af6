"""What every ``tritium`` command is: its arguments, its run and its rendering.

A command is a :class:`Command` subclass, as an applet is in Glasgow: it adds its own
arguments, checks them before anything slow starts, runs, and says the result to a
person; ``--json`` prints the same result as one JSON object instead. The CLI
(:mod:`tritium.cli`) only builds the parser from :data:`tritium.cli.COMMANDS` and turns
errors into one line and an exit status.
"""

import argparse
import json

__all__ = ["Command", "HelpFormatter"]


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows every option's default, except where there is none (None, a flag
    that is off) or the help text already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
                and "default" not in text):
            text += " (default: %(default)s)"
        return text


class Command:
    """One ``tritium`` command.

    A subclass sets ``name`` and ``help`` (one line for ``tritium --help``; its
    ``description``, if set, heads ``tritium NAME --help``) and implements:

    - :meth:`arguments`: add its options to its parser;
    - :meth:`check`: refuse bad arguments (raise ``InputError``) before anything slow;
    - :meth:`run`: do the work and return a JSON-able dict;
    - :meth:`render`: the lines a person reads, from that dict.

    ``json = True`` adds ``--json``: stdout then holds exactly the result, as one JSON
    object. :meth:`show` and :meth:`exit_status` may be overridden by a command whose
    output streams while it runs.
    """

    name: str
    help: str
    description: str = None
    json = True

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def check(self, args) -> None:
        pass

    def run(self, args) -> dict:
        raise NotImplementedError

    def render(self, result: dict, args):
        raise NotImplementedError

    def show(self, result: dict, args) -> None:
        if getattr(args, "json", False):
            print(json.dumps(result))
        else:
            for line in self.render(result, args):
                print(line)

    def exit_status(self, result: dict) -> int:
        return 0
