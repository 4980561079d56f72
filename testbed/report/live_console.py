"""The console while a run's calls are up: in a terminal, a bar with the time left and a table of each
call direction's last second (E-model MOS estimate, loss, one-way delay, jitter) that stays on screen
for the variants already run, so a training audience sees fifo and EF side by side; in a log, a line
every ``LOG_EVERY_S`` with the time left. Fed by ``testbed.workload.live`` once a second.
"""

from __future__ import annotations

import statistics
import threading
import time
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from testbed.report.console import COLORS
from testbed.report.figures import mos_grade
from testbed.results.live import LiveDirection, LiveSample

LOG_EVERY_S = 10.0
PER_DIRECTION_ROWS = 8  # more directions than this in a variant: one summary row for it
OVERHEAD_S = 3.0  # a variant's lab, drain and teardown around its workload, for the time left


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mos(value: float | None) -> Text:
    return Text(_num(value, 2), style=COLORS.get(mos_grade(value), ""))


class LiveView:
    """A run's live console (a context manager); ``runs``: variant runs in the run, in order."""

    def __init__(self, console: Console, runs: int):
        self.console, self.runs = console, runs
        self.latest: dict[str, LiveSample] = {}  # by variant run, in the order they ran
        self.started = time.monotonic()
        self.last_line = 0.0
        self.logged: set[str] = set()  # variants whose first figures are in the log
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(kind, error, trace)

    def __call__(self, sample: LiveSample) -> None:
        """A new second (from the sampler's thread)."""
        with self._lock:
            self.latest[sample.variant] = merged(self.latest.get(sample.variant), sample)
            if self._live is not None:
                self._live.update(self.render())
                return
            first = sample.variant not in self.logged and any(d.mos is not None for d in sample.directions)
            if first or time.monotonic() - self.last_line >= LOG_EVERY_S:  # a variant's first figures, then every 10 s
                self.logged.add(sample.variant)
                self.last_line = time.monotonic()
                self.console.print(self.log_line(sample), highlight=False, markup=False, soft_wrap=True)

    def left_s(self, sample: LiveSample) -> float:
        """This variant's workload left, and the runs after it at the same length plus their overhead."""
        after = max(0, self.runs - len(self.latest))
        return max(0.0, sample.duration_s - sample.elapsed_s) + after * (sample.duration_s + OVERHEAD_S)

    def log_line(self, sample: LiveSample) -> str:
        mos = [d.mos for d in sample.directions if d.mos is not None]
        worst = f", lowest MOS estimate {min(mos):.2f}" if mos else ""
        return (
            f"  variant {sample.variant} ({len(self.latest)} of {self.runs}): {sample.elapsed_s:.0f} of "
            f"{sample.duration_s:.0f} s{worst}; about {self.left_s(sample):.0f} s left in the run"
        )

    def render(self) -> Group:
        current = list(self.latest.values())[-1]
        bar = ProgressBar(total=max(current.duration_s, 1e-9), completed=min(current.elapsed_s, current.duration_s))
        head = Text(
            f"variant {current.variant} ({len(self.latest)} of {self.runs}): {current.elapsed_s:.0f} of "
            f"{current.duration_s:.0f} s, about {self.left_s(current):.0f} s left in the run"
        )
        return Group(head, bar, self.table())

    def table(self) -> Table:
        table = Table(box=None, padding=(0, 1), title="last second (MOS: E-model estimate)", title_justify="left")
        for column in ("variant", "call", "direction"):
            table.add_column(column)
        for column in ("MOS", "loss %", "delay ms", "jitter ms"):
            table.add_column(column, justify="right")
        for variant, sample in self.latest.items():
            if len(sample.directions) <= PER_DIRECTION_ROWS:
                for d in sample.directions:
                    table.add_row(
                        variant, d.call, d.direction, _mos(d.mos), _num(d.loss_pct), _num(d.delay_ms), _num(d.jitter_ms)
                    )
            else:
                table.add_row(variant, *summary_row(sample.directions))
        return table


def summary_row(directions: list[LiveDirection]) -> tuple[str, str, Text, str, str, str]:
    """Many directions as one row: their count, the lowest MOS and the medians of the rest."""

    def median(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    mos = [d.mos for d in directions if d.mos is not None]
    return (
        f"{len(directions)} directions",
        "median (lowest MOS)",
        _mos(min(mos) if mos else None),
        _num(median([d.loss_pct for d in directions])),
        _num(median([d.delay_ms for d in directions])),
        _num(median([d.jitter_ms for d in directions])),
    )


def merged(before: LiveSample | None, now: LiveSample) -> LiveSample:
    """The new second, keeping a direction's last values where it has none now (a call hanging up)."""
    if before is None:
        return now
    kept = {(d.call, d.direction): d for d in before.directions}
    for d in now.directions:
        if d.mos is not None or (d.call, d.direction) not in kept:
            kept[(d.call, d.direction)] = d
    return LiveSample(now.variant, now.elapsed_s, now.duration_s, list(kept.values()))
