"""The reports' interactive charts, drawn by plotly: hover a value, zoom into seconds, click a legend entry
to hide a variant. Pages work offline and without a CDN: the plotly script is written once beside the
report as ``plotly.min.js`` (``write_script``) and every chart refers to it, so a run directory zipped
whole still shows its charts. Timeline events are dashed vertical lines, with their names on hover.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.offline

PLOTLY_JS = "plotly.min.js"
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
WIDTH, HEIGHT = 640, 300
CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}

Series = tuple[str, Sequence[float], Sequence[float | int | None]]  # label, xs, ys (None: no value)
Markers = Sequence[tuple[float, str]]  # (x, what happened there)
Bands = Sequence[tuple[float, float, str, str]]  # (low, high, name, colour): shaded y ranges


def escape(text: Any) -> str:
    return html.escape(str(text))


def write_script(directory: Path) -> Path:
    """``plotly.min.js`` in ``directory`` (unless an identical copy is there): the one script every chart
    of the reports in that directory uses."""
    script = plotly.offline.get_plotlyjs().encode()
    target = directory / PLOTLY_JS
    directory.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.stat().st_size != len(script):
        target.write_bytes(script)
    return target


def script_tag(prefix: str = "") -> str:
    """The page's one ``<script>`` for plotly, ``prefix`` being the path from the page to its directory."""
    return f'<script src="{escape(prefix + PLOTLY_JS)}"></script>'


def embed(figure: go.Figure) -> str:
    """A chart as a ``<div>`` (the page loads plotly once, with ``script_tag``)."""
    div: str = figure.to_html(full_html=False, include_plotlyjs=False, config=CONFIG)
    return f'<div class="plot">{div}</div>'


def no_data(title: str) -> str:
    return f'<div class="plot nodata">{escape(title)}: no data</div>'


def _layout(figure: go.Figure, title: str, x_title: str, y_title: str, height: int = HEIGHT) -> go.Figure:
    figure.update_layout(
        title={"text": escape(title), "font": {"size": 14}},
        width=WIDTH,
        height=height,
        margin={"l": 55, "r": 15, "t": 40, "b": 45},
        template="plotly_white",
        xaxis_title=escape(x_title),
        yaxis_title=escape(y_title),
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 1.0, "xanchor": "right"},
        hovermode="x unified",
    )
    return figure


def _add_markers(figure: go.Figure, markers: Markers) -> None:
    """Each event a dashed vertical line; one hidden-by-click legend entry ("events") shows their names
    on hover at the top of the plot."""
    if not markers:
        return
    for x, _ in markers:
        figure.add_vline(x=x, line_dash="dash", line_color="#888", line_width=1)
    figure.add_trace(
        go.Scatter(
            x=[x for x, _ in markers],
            y=[1.0] * len(markers),
            yaxis="y2",
            mode="markers",
            marker={"symbol": "triangle-down", "size": 9, "color": "#888"},
            name="events",
            text=[escape(what) for _, what in markers],
            hovertemplate="%{x:.1f} s: %{text}<extra></extra>",
        )
    )
    figure.update_layout(yaxis2={"overlaying": "y", "range": [0, 1.05], "visible": False, "fixedrange": True})


def line_chart(
    title: str,
    y_label: str,
    series: Sequence[Series],
    markers: Markers = (),
    y_min: float | None = None,
    y_max: float | None = None,
    x_label: str = "seconds from the variant's start",
    bands: Bands = (),
) -> str:
    """A time series per (label, xs, ys), one colour per series' place; ``markers``: timeline events;
    ``bands``: y ranges shaded and named (MOS quality bands)."""
    if not any(y is not None for _, _, ys in series for y in ys):
        return no_data(title)
    figure = go.Figure()
    for index, (label, xs, ys) in enumerate(series):
        figure.add_trace(
            go.Scatter(
                x=list(xs),
                y=list(ys),
                name=escape(label),
                mode="lines",
                line={"color": COLORS[index % len(COLORS)], "width": 1.8},
                connectgaps=False,
                hovertemplate=f"%{{y:.2f}} {escape(y_label)}",
            )
        )
    _add_markers(figure, markers)
    for low, high, name, colour in bands:
        figure.add_hrect(
            y0=low,
            y1=high,
            fillcolor=colour,
            opacity=0.12,
            line_width=0,
            layer="below",
            annotation_text=escape(name),
            annotation_position="right",
            annotation_font={"size": 9, "color": "#666"},
        )
    _layout(figure, title, x_label, y_label)
    if y_min is not None or y_max is not None:
        figure.update_yaxes(range=[y_min, y_max], autorange=False if y_min is not None and y_max is not None else None)
        if y_max is None:
            figure.update_yaxes(rangemode="tozero")
    return embed(figure)


def cdf_chart(
    title: str,
    x_label: str,
    series: Sequence[tuple[str, Sequence[float]]],
    x_range: tuple[float, float] = (1.0, 4.5),
    markers: Markers = (),
) -> str:
    """An empirical CDF per (label, values): the share of values at or below x, a step per value;
    ``markers``: thresholds (dashed verticals)."""
    filled = [(index, label, sorted(values)) for index, (label, values) in enumerate(series) if len(values)]
    if not filled:
        return no_data(title)
    figure = go.Figure()
    for index, label, values in filled:
        n = len(values)
        figure.add_trace(
            go.Scatter(
                x=[x_range[0], *values, x_range[1]],
                y=[0.0, *((i + 1) / n for i in range(n)), 1.0],
                line_shape="hv",
                name=escape(f"{label} ({n})"),
                line={"color": COLORS[index % len(COLORS)], "width": 1.8},
                hovertemplate="%{y:.0%} at or below %{x:.2f}<extra>" + escape(label) + "</extra>",
            )
        )
    _add_markers(figure, markers)
    _layout(figure, title, x_label, "share at or below")
    figure.update_xaxes(range=list(x_range))
    figure.update_yaxes(range=[0, 1.02], tickformat=".0%")
    return embed(figure)
