"""Running the CLI in-process from a test, as ``click.testing`` does for Click: what it
printed and its exit status, and the check that a failure is one line on stderr.

Used by the tests of every command (``tests/host``); ``capsys`` is pytest's fixture
that captures stdout and stderr.
"""

from . import EXIT_ERROR, main

__all__ = ["run_cli", "assert_one_line_error"]


def run_cli(capsys, *argv):
    """``tritium *argv`` in this process: (exit status, stdout, stderr)."""
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(capsys, *argv, match: str) -> str:
    """``tritium *argv`` fails as bad input must: exit status 2, nothing on stdout, one
    line on stderr that starts ``tritium: error:`` and contains ``match``, no traceback.
    Returns that line."""
    code, out, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == EXIT_ERROR, f"exit status {code}, not {EXIT_ERROR}: {err}"
    assert out == "", f"stdout is not empty: {out!r}"
    assert len(lines) == 1 and lines[0].startswith("tritium: error: "), err
    assert match in lines[0], lines[0]
    return lines[0]
