"""``sweep.html``: a sweep's result on one page, for seeing which parameters and which router template keep
calls good, and how sure the repetitions make each figure.

Plotly draws the figures (hover and zoom help with many points). The page works offline and without a CDN:
the plotly script is written once beside it as ``plotly.min.js`` and every figure refers to that file, so
a directory of reports carries one copy of the 4 MB script rather than one per figure.
"""

from __future__ import annotations

import html
from itertools import product
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from testbed.report import charts, sweep_console
from testbed.report.figures import mos_grade, percent
from testbed.report.sweep_console import (
    counted,
    level,
    number,
    point_label,
    short_names,
    swept,
    variants,
    verdict,
    warnings,
)
from testbed.results.metrics import UNITS
from testbed.results.sweep import Axis, MetricStats, SweepResult, TrialStats

MOS_NAMES = {"mos_emodel": "MOS E-model", "mos_pesq": "MOS PESQ"}
MAX_PANELS = 6  # an axis' curves per combination of the other axes' values: more figures stop being read
COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.good { background: #dff0d8; } .fair { background: #fcf8e3; } .bad { background: #f2dede; }
.note { color: #666; font-size: 0.9em; } .warn { color: #8a5a00; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; } .plot { flex: 0 0 auto; }
"""

RGB = tuple[int, int, int]
Key = tuple[str, tuple[str, ...]]  # (variant, the point's values in the swept axes' order)


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _key(variant: str, parameters: dict[str, Any], axes: list[Axis]) -> Key:
    return variant, tuple(str(parameters.get(axis.path)) for axis in axes)


def _stats(lookup: dict[Key, TrialStats], key: Key, metric: str) -> MetricStats | None:
    trial = lookup.get(key)
    return trial.metrics.get(metric) if trial else None


def _hover(label: str, x: str, stats: MetricStats | None, metric: str) -> str:
    """A point's hover text (label and x come escaped): the median, its interval and level, p5."""
    text = f"{label}<br>{x}: {sweep_console.median_text(stats, metric)}"
    if stats is not None and stats.interval is not None:
        text += f"<br>{level(stats.interval)} interval, {counted(stats)} repetitions"
    return text if stats is None else text + f"<br>p5 {number(stats.p5, metric)}"


def _add_curve(
    fig: go.Figure, xs: list[str], stats: list[MetricStats | None], metric: str, label: str, rgb: RGB
) -> None:
    """A median line with its interval as a filled band (drawn first, under the line): E-model solid,
    PESQ dashed, a colour per variant. The line's legend entry says the level the band's intervals reach
    (one entry for both: the legend stays short enough to read beside six lines)."""
    banded = [(x, s.interval, counted(s)) for x, s in zip(xs, stats, strict=True) if s and s.interval]
    name = label
    if banded:
        levels, reps = "/".join(sorted({level(i) for _, i, _ in banded})), sorted({n for _, _, n in banded})
        name = f"{label}, {levels} interval ({'/'.join(map(str, reps))} repetitions)"
        band = {"fill": "toself", "fillcolor": f"rgba{(*rgb, 0.15)}", "line": {"width": 0}, "hoverinfo": "skip"}
        x, y = [x for x, _, _ in banded], [i.high for _, i, _ in banded] + [i.low for _, i, _ in banded][::-1]
        fig.add_trace(go.Scatter(x=x + x[::-1], y=y, name=name, legendgroup=label, showlegend=False, **band))
    line = {"color": f"rgb{rgb}", "dash": "solid" if metric == "mos_emodel" else "dash"}
    hover = {"text": [_hover(label, x, s, metric) for x, s in zip(xs, stats, strict=True)]}
    medians = [s.median if s is not None else None for s in stats]
    fig.add_trace(
        go.Scatter(x=xs, y=medians, mode="lines+markers", line=line, name=name, legendgroup=label, **hover,
                   hovertemplate="%{text}<extra></extra>")
    )  # fmt: skip


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, bar: float | None, width: int = 640) -> go.Figure:
    """A fixed size, two to a row (a plot sized from a wrapping flex box can come out wider than its box,
    cut off) and the legend under the plot, where it takes height rather than half the width."""
    margin = {"l": 50, "r": 20, "t": 50, "b": 150}
    legend = {"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0}
    fig.update_layout(title={"text": _esc(title)}, width=width, height=500, margin=margin, legend=legend)
    fig.update_layout(template="plotly_white", xaxis_title=_esc(x_title), yaxis_title=_esc(y_title))
    if bar is not None:
        fig.add_hline(y=bar, line_dash="dot", line_color="#b02a2a", annotation_text=f"bar {bar:.2f}")
    return fig


def _curve_figures(result: SweepResult, lookup: dict[Key, TrialStats], mos: list[str]) -> tuple[list[go.Figure], str]:
    """Per non-variant axis: MOS against the axis' values, a line per variant and MOS, one figure per
    combination of the other axes' values (the first ``MAX_PANELS``, and a note of what was left out)."""
    axes, names, shown = swept(result), short_names(swept(result)), variants(result)
    threshold = result.trials[0].threshold if result.trials else None
    figures, notes = [], []
    for axis in axes:
        others = [other for other in axes if other is not axis]
        xs = [_esc(value) for value in axis.values]
        combos = list(product(*(other.values for other in others)))
        if len(combos) > MAX_PANELS:
            notes.append(
                f"MOS by {names[axis.path]}: the first {MAX_PANELS} of {len(combos)} combinations of "
                f"{', '.join(names[other.path] for other in others)} (the trial table has them all)"
            )
        for combo in combos[:MAX_PANELS]:
            fixed = {other.path: value for other, value in zip(others, combo, strict=True)}
            fig = go.Figure()
            for index, variant in enumerate(shown):
                for metric in mos:
                    keys = [_key(variant, {**fixed, axis.path: value}, axes) for value in axis.values]
                    stats = [_stats(lookup, key, metric) for key in keys]
                    label = _esc(f"{variant} {MOS_NAMES[metric]}")
                    _add_curve(fig, xs, stats, metric, label, COLORS[index % len(COLORS)])
            fig.update_xaxes(type="category", categoryorder="array", categoryarray=xs)
            where = point_label(fixed, names)
            figures.append(_layout(fig, f"MOS by {names[axis.path]}" + (f" at {where}" if where else ""),
                                   names[axis.path], "MOS (median over repetitions)", threshold))  # fmt: skip
    note = "".join(f'<p class="note">{_esc(note)}</p>' for note in notes)
    return figures, note


def _heatmaps(result: SweepResult, lookup: dict[Key, TrialStats]) -> list[go.Figure]:
    """With two parameter axes: the median MOS E-model over both, one map per variant."""
    axes = swept(result)
    names = short_names(axes)
    x_axis, y_axis = axes
    x_name, y_name = _esc(names[x_axis.path]), _esc(names[y_axis.path])
    figures = []
    for variant in variants(result):
        keys = [[_key(variant, {x_axis.path: x, y_axis.path: y}, axes) for x in x_axis.values] for y in y_axis.values]
        z = [[stats.median if (stats := _stats(lookup, key, "mos_emodel")) else None for key in row] for row in keys]
        hover = f"{x_name}=%{{x}}, {y_name}=%{{y}}: %{{z:.2f}}<extra></extra>"
        xs, ys = [_esc(x) for x in x_axis.values], [_esc(y) for y in y_axis.values]
        heatmap = go.Heatmap(z=z, x=xs, y=ys, zmin=1.0, zmax=4.5, colorscale="RdYlGn", texttemplate="%{z:.2f}",
                             hovertemplate=hover, colorbar={"title": {"text": "MOS"}})  # fmt: skip
        fig = go.Figure(heatmap).update_xaxes(type="category").update_yaxes(type="category")
        figures.append(_layout(fig, f"{variant}: median MOS E-model", names[x_axis.path], names[y_axis.path], None))
        fig.update_layout(height=420, margin_b=60)  # no legend under a heatmap
    return figures


def _box_label(trial: TrialStats, paths: list[str]) -> str:
    """A trial by its values (2mbit / 10 / fifo): shorter than its directory name, unique all the same."""
    return _esc(" / ".join([*(str(trial.parameters.get(path)) for path in paths), trial.variant]))


def _boxes(result: SweepResult) -> go.Figure | None:
    """MOS E-model per repetition, a box per trial coloured by variant: how much repetitions disagree."""
    fig, names = go.Figure(), [axis.path for axis in swept(result)]
    for index, variant in enumerate(variants(result)):
        points = [
            (_box_label(trial, names), value)
            for trial in result.trials
            if trial.variant == variant and (stats := trial.metrics.get("mos_emodel"))
            for value in stats.repetitions
            if value is not None
        ]
        if points:
            color = {"color": f"rgb{COLORS[index % len(COLORS)]}"}
            x, y = [x for x, _ in points], [y for _, y in points]
            fig.add_trace(go.Box(x=x, y=y, name=_esc(variant), marker=color, boxpoints="all", pointpos=0, jitter=0.3))
    if not fig.data:
        return None
    order = [_box_label(trial, names) for trial in result.trials]
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=order)
    width = max(640, min(1300, 50 * len(result.trials)))
    title = "trial (" + " / ".join([*short_names(swept(result)).values(), "variant"]) + ")"
    return _layout(fig, "MOS E-model per repetition", title, "MOS E-model", None, width)


def _interval_cell(stats: MetricStats | None, metric: str) -> str:
    if stats is None or stats.median is None:
        return '<td class="num">-</td>'
    grade = mos_grade(stats.median) if metric in MOS_NAMES else ""
    text = number(stats.median, metric)
    if stats.interval is not None:
        low, high = number(stats.interval.low, metric), number(stats.interval.high, metric)
        text += f' <span class="note">[{low}-{high}] {level(stats.interval)}</span>'
    return f'<td class="num {grade}" title="p5 {number(stats.p5, metric)}">{text}</td>'


def _header_name(metric: str) -> str:
    unit = UNITS.get(metric, "").strip()
    return _esc(MOS_NAMES.get(metric, metric) + (f" ({unit})" if unit else ""))


def trial_table(result: SweepResult, trial_links: dict[str, str]) -> str:
    """A row per trial: its parameters and variant, each metric's median [interval] level, MOS E-model
    p5, the share of call directions below the bar, the harness flag and a link to its own report."""
    axes = swept(result)
    names = short_names(axes)
    head = "".join(f'<th title="{_esc(a.path)}">{_esc(names[a.path])}</th>' for a in axes)
    head += "<th>variant</th><th>reps</th>" + "".join(f"<th>{_header_name(m)}</th>" for m in result.metrics)
    rows = [f"<table><tr>{head}<th>MOS E-model p5</th><th>below bar</th><th>harness</th><th>report</th></tr>"]
    for trial in result.trials:
        cells = "".join(f"<td>{_esc(trial.parameters.get(a.path, '-'))}</td>" for a in axes)
        cells += f'<td>{_esc(trial.variant)}</td><td class="num">{trial.repetitions}</td>'
        cells += "".join(_interval_cell(trial.metrics.get(m), m) for m in result.metrics)
        emodel = trial.metrics.get("mos_emodel")
        cells += f'<td class="num">{number(emodel.p5 if emodel else None, "mos_emodel")}</td>'
        cells += f'<td class="num" title="bar {trial.threshold:.2f}">{percent(trial.below)}</td>'
        flag = f"{trial.harness_flagged} of {trial.repetitions} fell behind" if trial.harness_flagged else ""
        cells += f'<td class="warn">{_esc(flag)}</td>'
        link = trial_links.get(trial.trial)
        name = _esc(trial.trial)
        cells += f'<td><a href="{_esc(link)}">{name}</a></td>' if link else f"<td>{name}</td>"
        rows.append(f"<tr>{cells}</tr>")
    return "".join(rows) + "</table>"


def comparison_table(result: SweepResult) -> str:
    """Per point, variant and metric: the median paired difference, its interval and level, Wilcoxon's p,
    whether it holds (the interval excludes 0) and whether the two trials' intervals are disjoint."""
    names = short_names(swept(result))
    rows = [
        "<table><tr><th>point</th><th>variant vs over</th><th>metric</th><th>median paired difference</th>"
        "<th>Wilcoxon p</th><th>holds (95%)</th><th>disjoint</th></tr>"
    ]
    for c in result.comparisons:
        difference = number(c.median, c.metric, sign=True)
        if c.interval is not None:
            low, high = number(c.interval.low, c.metric, sign=True), number(c.interval.high, c.metric, sign=True)
            difference += f' [{low}, {high}] <span class="note">{level(c.interval)}, {len(c.differences)} pairs</span>'
        p = "-" if c.wilcoxon_p is None else f"{c.wilcoxon_p:.3g}"
        rows.append(
            f"<tr><td>{_esc(point_label(c.parameters, names) or '-')}</td><td>{_esc(c.variant)} vs {_esc(c.over)}"
            f'</td><td>{_header_name(c.metric)}</td><td class="num">{difference}</td><td class="num">{p}</td>'
            f'<td class="{"good" if c.holds else ""}">{_esc(verdict(c))}</td>'
            f"<td>{'yes' if c.disjoint else 'no'}</td></tr>"
        )
    return "".join(rows) + "</table>"


def _header(result: SweepResult) -> str:
    """What ran where: the plan, its axes, the shards with host and kernel, and what is missing or doubtful."""
    axes = "; ".join(f"<code>{_esc(a.path)}</code> = {_esc(', '.join(map(str, a.values)))}" for a in result.axes)
    shards = "".join(
        f"<tr><td>{s.index}/{s.total}</td><td>{_esc(s.host)}</td><td>{_esc(s.kernel)}</td>"
        f'<td class="num">{len(s.order)}</td><td class="num">{s.parallel}</td></tr>'
        for s in result.shards
    )
    return (
        f"<h1>Sweep: {_esc(result.scenario)}</h1>"
        f'<p>plan <code title="{_esc(result.plan_fingerprint)}">{_esc(result.plan_fingerprint[:12])}</code>; '
        f"{len(result.trials)} trials, repeat {result.repeat}; up to {result.parallel} run(s) at once</p>"
        f"<p>axes: {axes}</p><table><tr><th>shard</th><th>host</th><th>kernel</th><th>runs</th><th>at once</th>"
        f"</tr>{shards}</table>"
        + "".join(f'<p class="warn">{_esc(line)}</p>' for line in warnings(result))
        + f'<p class="note">{_esc(sweep_console.INTERVAL_NOTE)}</p>'
    )


def _plots(figures: list[go.Figure]) -> str:
    return '<div class="plots">' + "".join(charts.embed(fig) for fig in figures) + "</div>"


def write(result: SweepResult, path: Path, trial_links: dict[str, str] | None = None) -> Path:
    """Write the report to ``path`` and ``plotly.min.js`` beside it (unless an identical copy is there);
    ``trial_links`` maps a trial to its report's href, relative to ``path``."""
    lookup = {_key(t.variant, t.parameters, swept(result)): t for t in result.trials}
    mos = [m for m in MOS_NAMES if any(t.metrics.get(m) and t.metrics[m].median is not None for t in result.trials)]
    mos = mos or ["mos_emodel"]
    body = [_header(result), "<h2>MOS</h2>"]
    if swept(result):
        figures, note = _curve_figures(result, lookup, mos)
        body += [note, _plots(figures)]
    else:
        body.append('<p class="note">no parameter axes: the variants\' repetitions are below</p>')
    if len(swept(result)) == 2:
        body += ["<h2>Median MOS E-model over both axes</h2>", _plots(_heatmaps(result, lookup))]
    boxes = _boxes(result)
    if boxes is not None:
        body += ["<h2>Repetitions</h2>", _plots([boxes])]
    body += ["<h2>Trials</h2>", trial_table(result, trial_links or {})]
    if result.comparisons:
        body += ["<h2>Comparisons (paired by repetition)</h2>", comparison_table(result)]
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(result.scenario)} sweep - voip-testbed</title>"
        f"<style>{STYLE}</style>{charts.script_tag()}</head><body>{''.join(body)}</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    charts.write_script(path.parent)
    path.write_text(page)
    return path
