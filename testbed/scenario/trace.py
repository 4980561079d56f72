"""The trace file format: a CSV time series of delay, jitter and loss that a link follows over time.

Pure parsing and lookup (no clocks), so a scenario is checked at validation and the userspace engine
(``testbed.lab.engine``) replays the same rows. Errors name the file, line, column and allowed range.
"""

from __future__ import annotations

import bisect
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from testbed.errors import InputError
from testbed.scenario.files import InputFileError, read_input_text

__all__ = ["MAX_TRACE_DELAY_MS", "TRACE_COLUMNS", "Trace", "TraceError", "TraceRow", "load_trace", "parse_trace"]

MAX_TRACE_DELAY_MS = 60_000.0  # the scenario's own limit on delay


class TraceError(InputError):
    """A trace file is malformed; the message names file, line, column and the allowed range."""


TRACE_COLUMNS = ("time_s", "delay_ms", "jitter_ms", "loss_pct")
_REQUIRED_COLUMNS = ("time_s", "delay_ms")
_COLUMN_RANGES = {
    "time_s": (0.0, math.inf),
    "delay_ms": (0.0, MAX_TRACE_DELAY_MS),
    "jitter_ms": (0.0, MAX_TRACE_DELAY_MS),
    "loss_pct": (0.0, 100.0),
}


@dataclass(frozen=True, slots=True)
class TraceRow:
    """The impairment from ``time_s`` on: delay and jitter in ms, loss in percent (None: not in the trace)."""

    time_s: float
    delay_ms: float
    jitter_ms: float | None = None
    loss_pct: float | None = None


@dataclass(frozen=True, slots=True)
class Trace:
    """A step function of time since start: the last row whose ``time_s`` <= t (the first row before it)."""

    source: str
    rows: tuple[TraceRow, ...]
    times_ns: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.rows:
            raise TraceError(f"{self.source}: the trace has no rows")
        times = tuple(round(row.time_s * 1e9) for row in self.rows)
        if any(later <= earlier for earlier, later in zip(times, times[1:], strict=False)):
            raise TraceError(f"{self.source}: time_s must increase from row to row")
        object.__setattr__(self, "times_ns", times)

    def index_at(self, t_ns: int) -> int:
        """Index of the row in effect ``t_ns`` after the start."""
        return max(bisect.bisect_right(self.times_ns, t_ns) - 1, 0)

    def at(self, t_s: float) -> TraceRow:
        """The row in effect ``t_s`` seconds after the start."""
        return self.rows[self.index_at(round(t_s * 1e9))]


def parse_trace(text: str, source: str = "<trace>") -> Trace:
    """Parse CSV text with the header ``time_s,delay_ms[,jitter_ms][,loss_pct]`` (blank and ``#`` lines skipped)."""
    lines = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    allowed = ", ".join(TRACE_COLUMNS)
    if not lines:
        raise TraceError(f"{source}: empty; the first line must be the header {allowed}")
    header_line, header_text = lines[0]
    header = [name.strip() for name in next(csv.reader([header_text]))]
    unknown = [name for name in header if name not in TRACE_COLUMNS]
    if unknown:
        raise TraceError(f"{source}:{header_line}: unknown column {unknown[0]!r}; allowed: {allowed}")
    missing = [name for name in _REQUIRED_COLUMNS if name not in header]
    if missing:
        raise TraceError(
            f"{source}:{header_line}: the header lacks {', '.join(missing)}; columns: {allowed} "
            "(jitter_ms and loss_pct are optional)"
        )
    if len(set(header)) != len(header):
        raise TraceError(f"{source}:{header_line}: a column appears twice in the header")
    rows: list[TraceRow] = []
    for number, line in lines[1:]:
        where = f"{source}:{number}"
        cells = next(csv.reader([line]))
        if len(cells) != len(header):
            raise TraceError(f"{where}: {len(cells)} values for {len(header)} columns ({', '.join(header)})")
        values = {name: _trace_value(where, name, cell) for name, cell in zip(header, cells, strict=False)}
        if rows and values["time_s"] <= rows[-1].time_s:
            raise TraceError(
                f"{where}: column time_s: {values['time_s']:g} does not come after "
                f"{rows[-1].time_s:g}; times must increase"
            )
        if values.get("jitter_ms", 0) > values["delay_ms"]:
            raise TraceError(
                f"{where}: column jitter_ms: {values['jitter_ms']:g} is larger than delay_ms "
                f"{values['delay_ms']:g}; negative delays would be clipped (allowed: 0 to delay_ms)"
            )
        rows.append(TraceRow(values["time_s"], values["delay_ms"], values.get("jitter_ms"), values.get("loss_pct")))
    if not rows:
        raise TraceError(f"{source}: no data rows after the header")
    return Trace(source, tuple(rows))


def _trace_value(where: str, name: str, cell: str) -> float:
    low, high = _COLUMN_RANGES[name]
    allowed = f"{low:g} or more" if math.isinf(high) else f"{low:g} to {high:g}"
    try:
        value = float(cell)
    except ValueError:
        raise TraceError(f"{where}: column {name}: {cell.strip()!r} is not a number; allowed: {allowed}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise TraceError(f"{where}: column {name}: {cell.strip()} is outside the allowed range: {allowed}")
    return value


def load_trace(path: str | Path) -> Trace:
    """Read a trace CSV file (see ``parse_trace``); errors name the file, line, column and allowed range."""
    try:
        text = read_input_text(path)
    except InputFileError as exc:
        raise TraceError(f"{path}: cannot read the trace: {exc}; a trace is a CSV text file") from None
    return parse_trace(text, str(path))
