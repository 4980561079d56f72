"""The console summary: variant x call x direction with the numbers an engineer looks at first, a short
Chrome-vs-model table when a browser was a listener, and a one-line verdict. A run with a variant of more
than ``MANY_DIRECTIONS`` call directions gets one distribution row per variant and the run's worst
directions instead of a row per direction. Sized for 80-column CI logs: units live in the headers,
columns are one space apart. Where the console is not a terminal (a CI log, a pipe), a table wider
than the console is printed at its own width rather than folded: a log does not wrap, and a name
split over two lines cannot be searched for."""

from __future__ import annotations

from rich import box
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table

from testbed.report.figures import (
    RTP_TIMESTAMPS,
    Direction,
    Pair,
    browser_listeners,
    candidate_pair,
    distribution,
    ef_on_wire,
    heard_by_browser,
    listener_name,
    many_directions,
    mos_grade,
    percent,
    worst_directions,
)
from testbed.results import RunResult, metric
from testbed.results.distribution import WORST_KEPT
from testbed.results.scores import DirectionScores

BROWSER_MARK = "*"
RTP_DELAY_MARK = "~"
WORST_SHOWN = 5  # a large run's worst call directions, listed by name under the distribution table


def _num(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


COLORS = {"good": "green", "fair": "yellow", "bad": "red"}  # by MOS band (figures.MOS_BANDS)


def _mos(value: float | None) -> str:
    if value is None:
        return "-"
    return f"[{COLORS[mos_grade(value)]}]{value:.2f}[/]"


def _table(title: str, columns: list[str], left: int) -> Table:
    """A compact table: a rule under the header, no vertical lines, one space between columns; the first
    ``left`` columns are labels, the rest numbers. Labels too long for the console fold onto a second
    line rather than lose their ends (a direction's mark)."""
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        padding=(0, 0),
        pad_edge=False,
        show_edge=False,
        caption_justify="left",
        title_justify="left",
    )
    for index, column in enumerate(columns):
        if index < left:
            table.add_column(column, justify="left", overflow="fold")
        else:
            table.add_column(column, justify="right")
    return table


MAIN_COLUMNS = [
    "variant",
    "call",
    "direction",
    "MOS\nE-model",
    "MOS\nPESQ",
    "loss\n%",
    "delay\np95 ms",
    "jitter\nms",
    "setup\ns",
    "EF on\nwire",
]


def summary_table(result: RunResult) -> Table:
    """A row per call direction; for a run with many, the run's worst directions (``distribution_table``
    has the rest)."""
    if many_directions(result):
        rows = worst_directions(result, WORST_SHOWN)
        title = f"{result.scenario.name}: the {len(rows)} lowest MOS E-model call directions of the run"
    else:
        rows = [
            Direction(variant.name, call, label, scores)
            for variant in result.variants
            for call in variant.calls
            for label, scores in call.directions.items()
        ]
        title = f"{result.scenario.name}: calls per variant and direction"
    return direction_table(title, rows)


def direction_table(title: str, rows: list[Direction]) -> Table:
    table = _table(title, MAIN_COLUMNS, 3)
    listeners: set[str] = set()
    rtp_delay = False
    for row in rows:
        call, scores = row.call, row.scores
        setup = _num(call.setup_s, 2)
        if call.outcome != "connected":
            setup = f"[red]{call.outcome}[/]"
        label = row.direction
        if heard_by_browser(scores):
            listeners.add(scores.listener)
            label += BROWSER_MARK
        delay = _num(metric(call, scores, "p95_delay"), 1)
        if isinstance(scores, DirectionScores) and scores.delay_source == RTP_TIMESTAMPS and delay != "-":
            rtp_delay = True
            delay = RTP_DELAY_MARK + delay
        table.add_row(
            row.variant,
            call.id,
            label,
            _mos(metric(call, scores, "mos_emodel")),
            _mos(metric(call, scores, "mos_pesq")),
            _num(metric(call, scores, "loss"), 1),
            delay,
            _num(metric(call, scores, "jitter"), 1),
            setup,
            ef_on_wire(scores),
        )
    notes = []
    if listeners:
        who = " / ".join(sorted(listener_name(listener) for listener in listeners))
        notes.append(f"{BROWSER_MARK} MOS of the browser's own playout ({who}); the model's below")
    if rtp_delay:
        notes.append(f"{RTP_DELAY_MARK} delay from RTP timestamps anchored at the first packets")
    table.caption = "\n".join(notes) or None
    return table


DISTRIBUTION_COLUMNS = [
    "variant",
    "call\ndirs",
    "MOS-E\nmedian",
    "MOS-E\np5",
    "MOS-E\nmin",
    "PESQ\nmedian",
    "below\nthreshold",
    "worst call",
]


def distribution_table(result: RunResult) -> Table | None:
    """One row per variant: MOS over all its call directions (None for a run without many)."""
    if not many_directions(result):
        return None
    table = _table(f"{result.scenario.name}: MOS over each variant's call directions", DISTRIBUTION_COLUMNS, 1)
    table.columns[-1].justify = "left"
    table.columns[-1].overflow = "fold"
    for variant in result.variants:
        found = distribution(variant)
        emodel = found.mos_emodel
        below = percent(found.below_threshold)
        if found.below_threshold:
            below = f"[{'red' if found.below_threshold > 0.05 else 'yellow'}]{below}[/]"
        worst = found.worst[0] if found.worst else None
        table.add_row(
            variant.name,
            str(found.directions),
            _mos(emodel.median if emodel else None),
            _mos(emodel.p5 if emodel else None),
            _mos(emodel.min if emodel else None),
            _mos(found.mos_pesq.median if found.mos_pesq else None),
            "-" if found.below_threshold is None else f"{below} <{found.threshold:g}",
            f"{worst.call} {_mos(worst.mos_emodel)}" if worst else "-",
        )
    table.caption = "\n".join(
        (
            "MOS-E: E-model; p5: 5th percentile; below threshold:",
            "share of directions under the scenario's MOS E-model",
            "min for the variant (else 3.6: R 70)",
        )
    )
    return table


def _both(pair: Pair, digits: int, scale: float = 1.0) -> str:
    """The browser's figure and the model's as one cell, e.g. "0.6/0.0"."""
    return "/".join("-" if value is None else f"{scale * value:.{digits}f}" for value in pair)


def browser_table(result: RunResult) -> Table | None:
    """Where a browser listened: its own concealment, jitter buffer and PESQ beside the playout model's
    (None when no browser listened)."""
    rows = browser_listeners(result)
    if not rows:
        return None
    table = _table(
        "browser listeners: Chrome vs the model",
        ["variant", "call", "direction", "concealed\n%", "buffer\nms", "PESQ", "pair"],
        3,
    )
    table.columns[-1].justify = "left"
    for row in rows:
        table.add_row(
            row.variant,
            row.call.id,
            row.direction,
            _both(row.concealed, 1, 100.0),
            _both(row.buffer_ms, 0),
            _both(row.pesq, 2),
            candidate_pair(row.browser),
        )
    table.caption = "cells: Chrome/model; buffer: mean jitter buffer delay"
    return table


def path_table(result: RunResult) -> Table | None:
    """The ICE path of calls that were offered TURN or relayed: what the vendors' tests report."""
    rows = [(variant.name, call) for variant in result.variants for call in variant.calls if call.path is not None]
    if not rows:
        return None
    table = _table(
        "call paths: the caller's ICE pair",
        ["variant", "call", "pair", "TURN\nrequired", "gather\ns", "ICE\ns", "DTLS\ns", "setup\ns", "TCP\nretrans"],
        3,
    )
    for name, call in rows:
        path = call.path
        assert path is not None
        required = "-" if path.turn_required is None else ("[yellow]yes[/]" if path.turn_required else "no")
        tcp = path.relay_tcp
        retrans = f"{tcp['retransmitted']}/{tcp['segs_out']}" if tcp else "-"
        times = [_num(path.timings.get(key), 2) for key in ("gather_s", "ice_s", "dtls_s")]
        table.add_row(name, call.id, path.label(), required, *times, _num(call.setup_s, 2), retrans)
    table.caption = "pair: local-remote candidate types/transport, relay(udp|tcp|tls); TCP retrans: sent/segments"
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


def print_whole(console: Console, renderable: RenderableType) -> None:
    """Print a table; to a non-terminal at its natural width if that is wider than the console (rich
    assumes 80 columns there and would fold every label that does not fit)."""
    if console.is_terminal:
        console.print(renderable)
        return
    natural = Measurement.get(console, console.options.update(width=10_000), renderable).maximum
    width = console.width
    console.width = max(width, natural)  # print(width=) cannot exceed the console's own
    try:
        console.print(renderable)
    finally:
        console.width = width


def print_summary(result: RunResult, console: Console) -> None:
    table = distribution_table(result)
    if table is not None:
        print_whole(console, table)
        console.print()
    print_whole(console, summary_table(result))
    for extra in (browser_table(result), path_table(result)):
        if extra is not None:
            console.print()
            print_whole(console, extra)
    for variant in result.variants:
        if variant.harness is not None and variant.harness.flagged:
            console.print(f"  [yellow]![/] {variant.name}: {variant.harness.note}", highlight=False)
        found = distribution(variant)
        if table is not None and found.unscored:
            first = "first calls" if len(found.unscored_calls) == WORST_KEPT else "calls"
            console.print(
                f"  [yellow]![/] {variant.name}: {found.unscored} call directions without a MOS "
                f"({first}: {', '.join(found.unscored_calls)})",
                highlight=False,
            )
    failed = [c for c in result.thresholds if not c.passed]
    for check in failed[:10]:
        console.print(f"  [red]x[/] {check.message}", highlight=False)
    if len(failed) > 10:
        console.print(f"  ... and {len(failed) - 10} more (see junit.xml)")
    console.print(verdict_line(result), highlight=False)
