"""``testbed report ...``: a run's report seen through a real browser (headless Chromium), and its images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from testbed.cli.common import out, reports_errors
from testbed.errors import ExitCode

app = typer.Typer(no_args_is_help=True, help="A run's HTML report in a real browser: checks and static images.")


@app.command("view")
@reports_errors
def report_view(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (its report.html) or the report file itself")],
    images: Annotated[
        Path | None, typer.Option(help="save report.png (the whole page) and one PNG per chart in this directory")
    ] = None,
) -> None:
    """Open the report in headless Chromium (/usr/bin/chromium, or TESTBED_CHROMIUM), offline, and say what
    it shows: charts drawn, audio players and their files, console errors. Exit 1 when the browser logged
    an error, a chart was not drawn or a player's file does not load."""
    from testbed.report.browser import view_report

    report = run_dir / "report.html" if run_dir.is_dir() else run_dir
    view = view_report(report, images)
    declared = report.read_text().count('class="plotly-graph-div"')
    broken = sorted(src for src, duration in view.audio.items() if not duration)
    out.print(f"{report}: {view.charts} of {declared} charts drawn, {len(view.audio)} audio players", highlight=False)
    for src in broken:
        out.print(f"  [red]x[/] player {src}: its file does not load", highlight=False)
    for message in view.console_errors:
        out.print(f"  [red]x[/] console: {message}", highlight=False, markup=False)
    if images is not None:
        out.print(f"{len(view.images)} images in {images}", highlight=False)
    if view.console_errors or broken or view.charts < declared:
        raise typer.Exit(ExitCode.FAILED)
