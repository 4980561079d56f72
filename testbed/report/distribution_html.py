"""The HTML report's view of a run with many calls: per variant, MOS as a distribution (a summary table and
a CDF of MOS E-model with every variant in one plot) and its worst call directions by name.

Shown when a variant has more than ``MANY_DIRECTIONS`` call directions (a small run's report has a row per
direction and reads fine without it); such a run's per-second plots are limited to these worst directions
(``plotted_directions``): three plots per direction for 2000 directions is a page of tens of megabytes.
"""

from __future__ import annotations

from testbed.report.charts import cdf_chart
from testbed.report.charts import escape as _escape
from testbed.report.figures import (
    Direction,
    distribution,
    many_directions,
    mos_grade,
    percent,
    worst_of,
)
from testbed.results import RunResult, metric
from testbed.results.distribution import WORST_KEPT, MosSummary


def _cell(value: float | None, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return '<td class="num">-</td>'
    return f'<td class="num">{value:.{digits}f}{suffix}</td>'


def _mos_cell(value: float | None) -> str:
    return f'<td class="num {mos_grade(value)}">{"-" if value is None else f"{value:.2f}"}</td>'


def _summary_cells(summary: MosSummary | None) -> str:
    if summary is None:
        return _mos_cell(None) * 3
    return _mos_cell(summary.median) + _mos_cell(summary.p5) + _mos_cell(summary.min)


def summary_table(result: RunResult) -> str:
    """Per variant run: how many directions, MOS E-model and PESQ median / p5 / minimum, the share below
    the MOS E-model bar and where the bar comes from."""
    rows = [
        "<table><tr><th rowspan='2'>variant</th><th rowspan='2'>call directions</th>"
        "<th rowspan='2'>without a MOS</th><th colspan='3'>MOS E-model</th><th colspan='3'>MOS PESQ</th>"
        "<th rowspan='2'>below threshold</th><th rowspan='2'>threshold</th></tr>"
        "<tr><th>median</th><th>p5</th><th>min</th><th>median</th><th>p5</th><th>min</th></tr>"
    ]
    for variant in result.variants:
        found = distribution(variant)
        rows.append(
            f"<tr><td>{_escape(variant.name)}</td>{_cell(found.directions, 0)}{_cell(found.unscored, 0)}"
            f"{_summary_cells(found.mos_emodel)}{_summary_cells(found.mos_pesq)}"
            f'<td class="num">{percent(found.below_threshold)}</td>'
            f'<td class="num" title="{_escape(found.threshold_source)}">&lt; {found.threshold:.2f}</td></tr>'
        )
    rows.append("</table>")
    return "".join(rows)


def cdf_plot(result: RunResult) -> str:
    """MOS E-model per variant as a CDF: x MOS 1-4.5, y the share of its call directions at or below."""
    series = [
        (
            variant.name,
            [
                value
                for call in variant.calls
                for scores in call.directions.values()
                if (value := metric(call, scores, "mos_emodel")) is not None
            ],
        )
        for variant in result.variants
    ]
    bars: dict[float, list[str]] = {}
    for variant in result.variants:
        bars.setdefault(distribution(variant).threshold, []).append(variant.name)
    markers = [(bar, f"threshold {bar:g}: {', '.join(names)}") for bar, names in sorted(bars.items())]
    return cdf_chart("MOS E-model over the call directions", "MOS E-model", series, (1.0, 4.5), markers)


def _worst_row(row: Direction) -> str:
    call, scores = row.call, row.scores
    return (
        f"<tr><td>{_escape(call.id)}</td><td>{_escape(row.direction)}</td>"
        f"{_mos_cell(metric(call, scores, 'mos_emodel'))}{_mos_cell(metric(call, scores, 'mos_pesq'))}"
        f"{_cell(metric(call, scores, 'loss'), 2, '%')}{_cell(metric(call, scores, 'p95_delay'), 1, ' ms')}"
        f"{_cell(metric(call, scores, 'jitter'), 1, ' ms')}"
        f"<td>{_escape(call.outcome)} {_escape(call.reason)}</td></tr>"
    )


def worst_tables(result: RunResult) -> str:
    """Per variant run, its lowest MOS E-model call directions by name, and its calls without a MOS."""
    blocks = []
    for variant in result.variants:
        found = distribution(variant)
        rows = worst_of(variant)
        first = "first calls" if len(found.unscored_calls) == WORST_KEPT else "calls"
        unscored = (
            f"<p class='note'>{found.unscored} call directions without a MOS ({first}: "
            f"{_escape(', '.join(found.unscored_calls))})</p>"
            if found.unscored
            else ""
        )
        blocks.append(
            f"<div><h3>{_escape(variant.name)}: the {len(rows)} worst of {found.directions} directions</h3>"
            "<table><tr><th>call</th><th>direction</th><th>MOS E-model</th><th>MOS PESQ</th>"
            "<th>network loss</th><th>p95 delay</th><th>jitter</th><th>outcome</th></tr>"
            + "".join(_worst_row(row) for row in rows)
            + f"</table>{unscored}</div>"
        )
    return "<div class='blocks'>" + "".join(blocks) + "</div>"


def distribution_section(result: RunResult) -> str:
    """The distribution view ('' for a run whose variants have few call directions)."""
    if not many_directions(result):
        return ""
    return (
        "<h2>Distribution</h2><p class='note'>MOS over every call direction of each variant: median, 5th "
        "percentile (numpy's linear method) and minimum; 'below threshold' is the share of directions under "
        "the scenario's MOS E-model min for the variant, or 3.6 (ITU-T G.107: R 70, some users dissatisfied) "
        "without one. Dashed lines in the plot: the thresholds.</p>"
        f"{summary_table(result)}<div class='plots'>{cdf_plot(result)}</div>"
        f"<h3>Worst calls</h3>{worst_tables(result)}"
    )


def plotted_directions(result: RunResult) -> set[tuple[str, str]] | None:
    """The (call id, direction) pairs worth a per-second plot group: every one in a small run (None), the
    variants' worst directions in a run with many."""
    if not many_directions(result):
        return None
    return {(row.call.id, row.direction) for variant in result.variants for row in worst_of(variant)}
