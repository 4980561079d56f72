"""What every command shares: the consoles, options, and the one place that turns the testbed's
exceptions into a one-line message and the documented exit code (``ExitCode``)."""

from __future__ import annotations

import errno
import functools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from testbed.errors import CapabilityError, ExitCode, InputError, TestbedError

if TYPE_CHECKING:
    from testbed.results.live import Monitor
    from testbed.scenario.model import Scenario

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

EngineOption = Annotated[
    str | None,
    typer.Option(
        "--impairment-engine", help="auto (netem where the kernel has it), netem or userspace; overrides the scenario"
    ),
]
BackendOption = Annotated[str | None, typer.Option(help="netns (default) or docker; overrides the scenario")]


def reports_errors(command: F) -> F:
    """Turn the testbed's exceptions into a one-line message and the documented exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TestbedError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]; everything this command created was removed")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug or an environment failure: one line, exit 4, details on request
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                _disk_full(exc)
            err.print(
                f"[bold red]error:[/] {escape(type(exc).__name__)}: {escape(str(exc))} "
                "(the testbed failed; run with TESTBED_DEBUG=1 for a traceback)",
                highlight=False,
                soft_wrap=True,
            )
            if os.environ.get("TESTBED_DEBUG"):
                raise
            raise typer.Exit(ExitCode.TESTBED_FAILED) from None

    return wrapper  # type: ignore[return-value]


def _disk_full(exc: OSError) -> NoReturn:
    where = f" writing {exc.filename}" if exc.filename else ""
    err.print(
        f"[bold red]error:[/] no space left on the disk{escape(where)} ({escape(exc.strerror or '')}): free "
        "some, or write the results elsewhere (--out); the lab was taken down, what was written before is kept",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(ExitCode.TESTBED_FAILED) from None


def require_root() -> None:
    if os.geteuid() != 0:
        raise CapabilityError("this command needs root (network namespaces); run it with sudo")


def warm_start(backend: str | None, parallel: int = 1) -> AbstractContextManager[object]:
    """Start the run's fork server before the command's own imports and the scenario's loading, so its
    warm-up overlaps them (``testbed.lab.forkserver``). Not for ``--parallel`` (each worker starts its own)
    or the docker backend; a scenario that picks docker itself leaves it idle."""
    if parallel > 1 or backend not in (None, "netns"):
        return nullcontext()
    from testbed.lab import forkserver

    return forkserver.serving()


@contextmanager
def live_view(wanted: bool, runs: int) -> Iterator[Monitor | None]:
    """The run's live console on stderr (``report.live_console``), or None when not wanted."""
    if not wanted:
        yield None
        return
    from testbed.report.live_console import LiveView

    with LiveView(err, runs) as view:
        yield view


def preload_clips(scenario: Scenario) -> None:
    """Have the fork server (if ``warm_start`` started one) encode the scenario's clips now, while this
    process imports the runner and the lab: encoding takes about 0.1 s of CPU per clip, which the first
    variant's agents otherwise wait for. The runner asks again per variant (a cache hit)."""
    from testbed.lab import forkserver

    server = forkserver.current()
    if server is not None:
        from testbed.workload.clips import scenario_clips

        server.preload_clips(scenario_clips(scenario))


def check_variants(path: Path, requested: list[str] | None, known: list[str]) -> list[str]:
    """The requested variants (all when none), each one checked against the scenario's."""
    for name in requested or []:
        if name not in known:
            raise InputError(f"{path}: no variant {name!r} (variants: {', '.join(known)})")
    return requested or known


def progress_printer() -> Callable[[str], None]:
    """Progress lines on stderr, each with the seconds since the command started."""
    started = time.monotonic()

    def progress(message: str) -> None:
        err.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {message}", highlight=False)

    return progress
