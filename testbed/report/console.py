"""The console summary: variant x call x direction with the numbers an engineer looks at first, and
a one-line verdict."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from testbed.results import RunResult, metric


def _num(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _mos(value: float | None) -> str:
    if value is None:
        return "-"
    color = "green" if value >= 4.0 else "yellow" if value >= 3.1 else "red"
    return f"[{color}]{value:.2f}[/]"


def summary_table(result: RunResult) -> Table:
    table = Table(title=f"{result.scenario.name}: calls per variant and direction")
    for column in ("variant", "call", "direction", "MOS E-model", "MOS PESQ", "loss", "p95 delay", "jitter", "setup"):
        table.add_column(column, justify="left" if column in ("variant", "call", "direction") else "right")
    for variant in result.variants:
        for call in variant.calls:
            setup = _num(call.setup_s * 1000 if call.setup_s is not None else None, 0, " ms")
            if call.outcome != "connected":
                setup = f"[red]{call.outcome}[/]"
            for direction, scores in call.directions.items():
                table.add_row(
                    variant.name,
                    call.id,
                    direction,
                    _mos(metric(call, scores, "mos_emodel")),
                    _mos(metric(call, scores, "mos_pesq")),
                    _num(metric(call, scores, "loss"), 1, "%"),
                    _num(metric(call, scores, "p95_delay"), 1, " ms"),
                    _num(metric(call, scores, "jitter"), 1, " ms"),
                    setup,
                )
    return table


def verdict_line(result: RunResult) -> str:
    verdict = result.verdict
    if verdict.checks == 0:
        return "no thresholds in the scenario: nothing to pass or fail"
    if verdict.passed:
        return f"[green]PASS[/]: all {verdict.checks} threshold checks met"
    return (
        f"[red]FAIL[/]: {verdict.failed} of {verdict.checks} threshold checks fell short; first: "
        f"{verdict.first_failure}"
    )


def print_summary(result: RunResult, console: Console) -> None:
    console.print(summary_table(result))
    for variant in result.variants:
        if variant.harness is not None and variant.harness.flagged:
            console.print(f"  [yellow]![/] {variant.name}: {variant.harness.note}", highlight=False)
    failed = [c for c in result.thresholds if not c.passed]
    for check in failed[:10]:
        console.print(f"  [red]x[/] {check.message}", highlight=False)
    if len(failed) > 10:
        console.print(f"  ... and {len(failed) - 10} more (see junit.xml)")
    console.print(verdict_line(result), highlight=False)
