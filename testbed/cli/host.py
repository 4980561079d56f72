"""``testbed doctor`` and ``testbed cleanup``: what this host can do, and what crashed runs left."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from testbed.cli.common import err, out, reports_errors, require_root
from testbed.errors import ExitCode

app = typer.Typer()


@app.command()
@reports_errors
def doctor(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Say what this host can do and, for each missing capability, what it disables and how to get it."""
    from testbed.lab.probe import ESSENTIAL, has, impairment_engine, probe
    from testbed.lab.registry import Registry

    capabilities = probe(Registry())
    missing_essential = [name for name in ESSENTIAL if not has(capabilities, name)]
    engine = impairment_engine(capabilities)
    engine_text = {
        "netem": "kernel netem (sch_netem is here)",
        "userspace": "the userspace NFQUEUE engine (this kernel has no sch_netem)",
        None: "none: links can be rate-limited, not delayed or made lossy",
    }[engine]
    netem_tests = _netem_test_location(has(capabilities, "netem"))
    if as_json:
        report = {
            "capabilities": [c.as_dict() for c in capabilities],
            "impairment_engine": engine,
            "netem_tests": netem_tests,
            "ready": not missing_essential,
        }
        print(json.dumps(report, indent=2))
    else:
        table = Table(title="testbed doctor", show_lines=False)
        for column in ("capability", "status", "detail", "without it", "how to get it"):
            table.add_column(column, overflow="fold")
        for c in capabilities:
            table.add_row(
                c.name,
                "[green]yes[/]" if c.available else "[red]no[/]",
                c.detail,
                "" if c.available else c.disables,
                "" if c.available else c.remedy,
            )
        out.print(table)
        out.print(f"delay/loss (impairment_engine: auto): {engine_text}", highlight=False)
        out.print(f"netem tests: {netem_tests}", highlight=False)
        if missing_essential:
            out.print(f"[red]not ready:[/] missing {', '.join(missing_essential)}")
        else:
            out.print("[green]ready[/] to build labs")
    if missing_essential:
        raise typer.Exit(ExitCode.MISSING_CAPABILITY)


def _netem_test_location(native: bool) -> str:
    """Where tests marked netem run: natively, or in a stock-kernel VM (tests/netem)."""
    if native:
        return "native (this kernel has sch_netem)"
    try:
        from testbed.lab.netemvm import netem_status
    except ImportError:
        return "no sch_netem here and no VM support installed"
    return netem_status()


@app.command()
@reports_errors
def cleanup(
    include_kept: Annotated[bool, typer.Option("--all", help="also remove labs kept by `testbed lab up`")] = False,
) -> None:
    """Remove what crashed or killed runs left behind (exactly what they recorded, nothing else)."""
    require_root()
    from testbed import scratch
    from testbed.lab.cleanup import cleanup as clean
    from testbed.lab.registry import Registry

    removals = clean(Registry(), include_kept=include_kept)
    leftovers = scratch.remove_orphans()  # browser profiles of agents that were killed
    if leftovers:
        out.print(f"removed {len(leftovers)} scratch director{'y' if len(leftovers) == 1 else 'ies'} of dead agents")
    if not removals and not leftovers:
        out.print("nothing to clean up")
    for removal in removals:
        what = ", ".join(removal.removed) or "nothing left"
        out.print(f"run {removal.run_id}: removed {what}", highlight=False)
        for failure in removal.failed:
            err.print(f"[red]run {removal.run_id}: could not remove {failure}[/]", highlight=False)
    if any(r.failed for r in removals):
        raise typer.Exit(ExitCode.TESTBED_FAILED)
