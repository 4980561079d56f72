"""The ``testbed`` command: a thin client of the Python API and the runner. Each command module
parses its options, calls the core and prints; exit codes are ``testbed.errors.ExitCode``.

``main(argv)`` runs a command in-process and returns its exit code (the tests call it that way).
"""

from __future__ import annotations

import sys

import typer
from typer.exceptions import Abort, TyperException

from testbed.cli import files, host, images, lab, report, runs, sweep
from testbed.errors import ExitCode

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Emulated network testbed: does a router's QoS design keep VoIP calls good?",
)
for commands in (files.app, host.app, runs.app, sweep.merge_app):
    app.registered_commands.extend(commands.registered_commands)
app.add_typer(lab.app, name="lab")
app.add_typer(images.app, name="images")
app.add_typer(sweep.app, name="sweep")
app.add_typer(report.app, name="report")


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code instead of exiting (the console script exits with it)."""
    try:
        result = app(args=sys.argv[1:] if argv is None else argv, prog_name="testbed", standalone_mode=False)
    except TyperException as exc:  # bad options or arguments (typer's usage errors)
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            print(f"error: {exc.format_message()}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except Abort:
        return ExitCode.INTERRUPTED
    return result if isinstance(result, int) else ExitCode.OK


__all__ = ["app", "main"]
