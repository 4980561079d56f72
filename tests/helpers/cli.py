"""The ``testbed`` command run in-process, as httpie's tests run theirs: same code path as the console
script (``testbed.cli.main``), without a Python start-up per call."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from testbed.cli import main


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> CliResult:
    """Run ``testbed ARGS...`` and capture what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return CliResult(int(code), out.getvalue(), err.getvalue())
