"""The console summary: variant x call x direction with the numbers an engineer looks at first, a short
Chrome-vs-model table when a browser was a listener, and a one-line verdict. Sized for 80-column CI logs:
units live in the headers, columns are one space apart."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from testbed.report.figures import (
    RTP_TIMESTAMPS,
    Pair,
    browser_listeners,
    candidate_pair,
    ef_on_wire,
    heard_by_browser,
    listener_name,
)
from testbed.results import RunResult, metric
from testbed.results.scores import DirectionScores

BROWSER_MARK = "*"
RTP_DELAY_MARK = "~"


def _num(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _mos(value: float | None) -> str:
    if value is None:
        return "-"
    color = "green" if value >= 4.0 else "yellow" if value >= 3.1 else "red"
    return f"[{color}]{value:.2f}[/]"


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
    table = _table(f"{result.scenario.name}: calls per variant and direction", MAIN_COLUMNS, 3)
    listeners: set[str] = set()
    rtp_delay = False
    for variant in result.variants:
        for call in variant.calls:
            setup = _num(call.setup_s, 2)
            if call.outcome != "connected":
                setup = f"[red]{call.outcome}[/]"
            for direction, scores in call.directions.items():
                label = direction
                if heard_by_browser(scores):
                    listeners.add(scores.listener)
                    label += BROWSER_MARK
                delay = _num(metric(call, scores, "p95_delay"), 1)
                if isinstance(scores, DirectionScores) and scores.delay_source == RTP_TIMESTAMPS and delay != "-":
                    rtp_delay = True
                    delay = RTP_DELAY_MARK + delay
                table.add_row(
                    variant.name,
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


def print_summary(result: RunResult, console: Console) -> None:
    console.print(summary_table(result))
    for extra in (browser_table(result), path_table(result)):
        if extra is not None:
            console.print()
            console.print(extra)
    for variant in result.variants:
        if variant.harness is not None and variant.harness.flagged:
            console.print(f"  [yellow]![/] {variant.name}: {variant.harness.note}", highlight=False)
    failed = [c for c in result.thresholds if not c.passed]
    for check in failed[:10]:
        console.print(f"  [red]x[/] {check.message}", highlight=False)
    if len(failed) > 10:
        console.print(f"  ... and {len(failed) - 10} more (see junit.xml)")
    console.print(verdict_line(result), highlight=False)
