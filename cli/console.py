"""What a person sees on the terminal while a command runs: spinners and progress on
stderr (only when it is a terminal), the generated text on stdout as it comes, and a
stdout whose failure (a closed pipe, a full disk) is told apart from every other error.
"""

import os
import sys
from contextlib import contextmanager, nullcontext

__all__ = ["status", "count_progress", "token_progress", "build_progress", "TextStream",
           "end_partial_line", "StdoutFailed", "GuardedStdout", "silence_stdout"]


def _console():
    from rich.console import Console
    return Console(stderr=True)


def status(message: str):
    """A transient spinner on stderr when it is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        return nullcontext()
    return _console().status(message)


@contextmanager
def count_progress(what: str, unit: str, total: int = None):
    """On a terminal, a transient bar on stderr, ``unit`` done of ``total`` (which the
    callback may give later: a checkpoint's layers are known once it is opened); yields
    its ``progress(done, total)`` callback (None elsewhere)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)
    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                  TimeElapsedColumn(), console=_console(), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def token_progress(what: str, total: int):
    """:func:`count_progress` of tokens."""
    return count_progress(what, "tokens", total)


@contextmanager
def build_progress(what: str):
    """On a terminal, a spinner with the elapsed time and the stage of a slow start (the
    simulator's first build); yields the ``progress(stage)`` callback (None elsewhere)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=_console(), transient=True) as bar:
        task = bar.add_task(f"starting {what}")
        yield lambda stage: bar.update(task, description=f"{what}: {stage}")


class TextStream:
    """Generated text on stdout as it comes: the prompt with the first piece (so that no
    spinner on the same terminal line can erase it), then each piece. Remembers whether
    the last character written ended a line, so that an error starts on a new one
    (:func:`end_partial_line`)."""

    midline = False                     # stdout holds an unfinished line of generated text

    def __init__(self, prompt: str):
        self._prompt = prompt

    def write(self, text: str) -> None:
        text, self._prompt = self._prompt + text, ""
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            TextStream.midline = not text.endswith("\n")

    def end(self, text: str) -> None:
        self.write(text + "\n")


def end_partial_line() -> None:
    """Before an error: end a half-written line of generated text on stdout."""
    if TextStream.midline:
        TextStream.midline = False
        try:
            sys.stdout.write("\n")
            sys.stdout.flush()
        except (OSError, StdoutFailed):
            pass


class StdoutFailed(Exception):
    """stdout could not be written: a closed pipe, a full disk."""


class GuardedStdout:
    """sys.stdout while a command runs: a failed write or flush raises
    :class:`StdoutFailed`, so that it is told apart from every other OSError."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise StdoutFailed(exc.strerror or str(exc)) from None

    def flush(self):
        try:
            self._stream.flush()
        except OSError as exc:
            raise StdoutFailed(exc.strerror or str(exc)) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def silence_stdout(stream) -> None:
    """Point ``stream``'s descriptor at /dev/null, so that the interpreter's flush of
    what is still buffered cannot fail again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass                        # not a real file (a test's capture): nothing to do
