"""The console summary of a sweep: one row per trial (what was swept, how sure the repetitions make the MOS),
then one line per comparison saying whether it holds. Sized for 80-column CI logs, where rich would
otherwise cut cells with '…': names are short (a path's last component), numbers are compact and every
column folds rather than truncates.

The small helpers (short axis names, a point's label, how an interval reads) are shared with the HTML
report (``sweep_html``) so both say the same thing the same way.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from testbed.report.console import print_whole
from testbed.report.figures import percent
from testbed.results.metrics import UNITS
from testbed.results.sweep import VARIANT_AXIS, Axis, Comparison, Interval, MetricStats, SweepResult, TrialStats

INTERVAL_NOTE = (
    "intervals: order statistics of the median over repetitions; "
    "a 95% interval needs 6 repetitions, fewer reach the level shown"
)
MOS_METRICS = ("mos_emodel", "mos_pesq")


def swept(result: SweepResult) -> list[Axis]:
    """The parameter axes, the variant left out: what a point's coordinates are."""
    return [axis for axis in result.axes if axis.path != VARIANT_AXIS]


def variants(result: SweepResult) -> list[str]:
    """The variants in the plan's order (the variant axis'), then any a trial names that the axis lacks."""
    found = [str(value) for axis in result.axes if axis.path == VARIANT_AXIS for value in axis.values]
    for trial in result.trials:
        if trial.variant not in found:
            found.append(trial.variant)
    return found


def short_names(axes: list[Axis]) -> dict[str, str]:
    """path -> column name: the path's last component (``rate``), its last two where two axes end alike."""
    last = [axis.path.rsplit(".", 1)[-1] for axis in axes]
    return {
        axis.path: ".".join(axis.path.split(".")[-2:]) if last.count(name) > 1 else name
        for axis, name in zip(axes, last, strict=True)
    }


def point_label(parameters: dict[str, Any], names: dict[str, str]) -> str:
    """A point's coordinates as ``rate=2mbit, count=10`` (the variant left out)."""
    return ", ".join(f"{names.get(path, path)}={value}" for path, value in parameters.items() if path != VARIANT_AXIS)


def digits(metric: str) -> int:
    """MOS reads to two decimals, milliseconds and percentages to one."""
    return 2 if metric in MOS_METRICS else 1


def number(value: float | None, metric: str, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits(metric)}f}" if sign else f"{value:.{digits(metric)}f}"


def level(interval: Interval) -> str:
    return f"{100 * interval.level:.0f}%"


def counted(stats: MetricStats | None) -> int:
    """Repetitions with a value: what the interval was computed from."""
    return 0 if stats is None else sum(value is not None for value in stats.repetitions)


def median_text(stats: MetricStats | None, metric: str) -> str:
    """``4.41 [4.38-4.43]``: the median over repetitions and its interval (none with one repetition)."""
    if stats is None or stats.median is None:
        return "-"
    text = number(stats.median, metric)
    if stats.interval is not None:
        text += f" [{number(stats.interval.low, metric)}-{number(stats.interval.high, metric)}]"
    return text


def comparison_text(comparison: Comparison, names: dict[str, str]) -> str:
    """One comparison as a sentence a log reader can take in at once, ending in holds / does not hold."""
    metric = comparison.metric
    where = point_label(comparison.parameters, names)
    text = f"at {where}: " if where else ""
    text += f"{comparison.variant} - {comparison.over} {metric} "
    pairs = len(comparison.differences)
    if comparison.median is None:
        text += "- (no pairs)"
    elif comparison.interval is None:
        text += f"{number(comparison.median, metric, sign=True)}{UNITS.get(metric, '')} ({pairs} pair, no interval)"
    else:
        interval = comparison.interval
        text += (
            f"{number(comparison.median, metric, sign=True)} "
            f"[{number(interval.low, metric, sign=True)}, {number(interval.high, metric, sign=True)}]"
            f"{UNITS.get(metric, '')} ({level(interval)} order-statistics interval, {pairs} pairs)"
        )
    return text + ": " + verdict(comparison)


def verdict(comparison: Comparison) -> str:
    """holds (its interval excludes 0 at 95 %), or holds at a lower level only, or does not hold."""
    if comparison.holds:
        return "holds"
    if comparison.excludes_zero and comparison.interval is not None:
        return f"holds at {level(comparison.interval)} only (95% needs 6 repetitions)"
    return "does not hold"


def warnings(result: SweepResult) -> list[str]:
    """What makes a sweep incomplete or its figures doubtful: missing and duplicated trials, and trials
    with repetitions whose harness fell behind (the testbed, not the network, may have lowered them)."""
    lines = []
    if result.missing:
        lines.append(f"missing trials (no shard has results): {', '.join(result.missing)}")
    if result.duplicated:
        lines.append(f"trials more than one shard ran (first kept): {', '.join(result.duplicated)}")
    flagged = [f"{trial.trial} ({trial.harness_flagged})" for trial in result.trials if trial.harness_flagged]
    if flagged:
        lines.append(f"repetitions whose harness fell behind, not network impairment: {', '.join(flagged)}")
    return lines


def _mos(text: str, value: float | None) -> str:
    if value is None:
        return text
    color = "green" if value >= 4.0 else "yellow" if value >= 3.1 else "red"
    return f"[{color}]{escape(text)}[/]"


def _row(trial: TrialStats, paths: list[str]) -> list[str]:
    emodel = trial.metrics.get("mos_emodel")
    pesq = trial.metrics.get("mos_pesq")
    return [
        *(escape(str(trial.parameters.get(path, "-"))) for path in paths),
        escape(trial.variant),
        str(trial.repetitions),
        _mos(median_text(emodel, "mos_emodel"), emodel.median if emodel else None),
        _mos(number(pesq.median if pesq else None, "mos_pesq"), pesq.median if pesq else None),
        number(emodel.p5 if emodel else None, "mos_emodel"),
        percent(trial.below, 0),
        "[yellow]harness[/]" if trial.harness_flagged else "",
    ]


def trial_table(result: SweepResult) -> Table:
    """A row per trial. Every column folds in a terminal: a cell too wide for it wraps, never loses its
    end (``print_whole``: elsewhere the table keeps its own width)."""
    axes = swept(result)
    names = short_names(axes)
    table = Table(
        title=f"{escape(result.scenario)}: {len(result.trials)} trials, repeat {result.repeat}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
        show_edge=False,
    )
    for axis in axes:
        table.add_column(escape(names[axis.path]), overflow="fold")
    table.add_column("variant", overflow="fold")
    table.add_column("reps", justify="right", overflow="fold")
    table.add_column("MOS E-model", justify="right", overflow="fold", min_width=9)
    table.add_column("PESQ", justify="right", overflow="fold")
    table.add_column("p5", justify="right", overflow="fold")
    table.add_column("below", justify="right", overflow="fold")
    table.add_column("flag", overflow="fold")
    paths = [axis.path for axis in axes]
    for trial in result.trials:
        table.add_row(*_row(trial, paths))
    return table


def print_sweep(result: SweepResult, console: Console) -> None:
    """The trial table, the comparisons, what is missing and how the intervals were made, within
    ``console.width`` in a terminal (the trial table at its own width elsewhere)."""
    runs = f", up to {result.parallel} runs at once" if result.parallel > 1 else ""
    console.print(
        f"plan {result.plan_fingerprint[:12]}, {len(result.shards)} shard(s){runs}", markup=False, highlight=False
    )
    print_whole(console, trial_table(result))
    names = short_names(swept(result))
    for comparison in result.comparisons:
        style = "green" if comparison.holds else "yellow" if comparison.excludes_zero else None
        console.print(comparison_text(comparison, names), style=style, markup=False, highlight=False)
    for line in warnings(result):
        console.print(line, style="yellow", markup=False, highlight=False)
    console.print(INTERVAL_NOTE, markup=False, highlight=False)
