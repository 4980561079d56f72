"""The HTML report's hand-made SVG charts (no plotting library, no scripts): a time-series line chart and
an empirical CDF, in one style and one palette."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

Series = tuple[str, Sequence[float], Sequence[float | int | None]]  # label, xs, ys (None: no value)

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
WIDTH, HEIGHT, PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 640, 220, 56, 16, 24, 34


def escape(text: Any) -> str:
    return html.escape(str(text))


def line_chart(
    title: str,
    y_label: str,
    series: list[Series],
    markers: Sequence[tuple[float, str]] = (),
    y_min: float | None = None,
    y_max: float | None = None,
) -> str:
    """An SVG line chart: ``series`` = (label, xs, ys); ``markers`` = (x, label) dashed verticals."""
    points = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys, strict=False) if y is not None]
    if not points:
        return f'<svg width="{WIDTH}" height="60"><text x="10" y="35">{escape(title)}: no data</text></svg>'
    x_low = min(min(x for x, _ in points), *(m for m, _ in markers)) if markers else min(x for x, _ in points)
    x_high = max(max(x for x, _ in points), *(m for m, _ in markers)) if markers else max(x for x, _ in points)
    y_low = y_min if y_min is not None else min(0.0, min(y for _, y in points))
    y_high = y_max if y_max is not None else max(y for _, y in points) * 1.1 or 1.0
    x_high = x_high if x_high > x_low else x_low + 1
    y_high = y_high if y_high > y_low else y_low + 1
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM

    def sx(x: float) -> float:
        return PAD_LEFT + (x - x_low) / (x_high - x_low) * plot_w

    def sy(y: float) -> float:
        return PAD_TOP + plot_h - (min(max(y, y_low), y_high) - y_low) / (y_high - y_low) * plot_h

    parts = [
        f'<svg width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg" font-size="11">',
        f'<text x="{PAD_LEFT}" y="15" font-weight="bold">{escape(title)}</text>',
        f'<text x="12" y="{PAD_TOP + plot_h / 2}" transform="rotate(-90 12 {PAD_TOP + plot_h / 2})" '
        f'text-anchor="middle">{escape(y_label)}</text>',
    ]
    for i in range(5):
        value = y_low + (y_high - y_low) * i / 4
        y = sy(value)
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{PAD_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{value:.3g}</text>'
        )
    for i in range(6):
        value = x_low + (x_high - x_low) * i / 5
        parts.append(f'<text x="{sx(value):.1f}" y="{HEIGHT - 18}" text-anchor="middle">{value:.0f}</text>')
    parts.append(f'<text x="{PAD_LEFT + plot_w / 2}" y="{HEIGHT - 4}" text-anchor="middle">seconds into the run</text>')
    for x, label in markers:
        parts.append(
            f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{PAD_TOP}" y2="{PAD_TOP + plot_h}" '
            f'stroke="#888" stroke-dasharray="4 3"><title>{escape(label)}</title></line>'
        )
    for index, (label, xs, ys) in enumerate(series):
        color = COLORS[index % len(COLORS)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys, strict=False) if y is not None)
        if coords:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{coords}"/>')
        parts.append(
            f'<text x="{WIDTH - PAD_RIGHT - 4}" y="{PAD_TOP + 12 + 13 * index}" text-anchor="end" '
            f'fill="{color}">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


CDF_PAD_RIGHT = 150  # the legend stands right of the plot: a CDF's lines can cross any corner inside it


def cdf_chart(
    title: str,
    x_label: str,
    series: Sequence[tuple[str, Sequence[float]]],
    x_range: tuple[float, float] = (1.0, 4.5),
    markers: Sequence[tuple[float, str]] = (),
    x_step: float = 0.5,
) -> str:
    """An SVG empirical CDF: per series (label, values) a step line of the share of values at or below x;
    values outside ``x_range`` are drawn at its edges. ``markers`` = (x, label) dashed verticals."""
    filled = [(index, label, sorted(values)) for index, (label, values) in enumerate(series) if len(values)]
    if not filled:
        return f'<svg width="{WIDTH}" height="60"><text x="10" y="35">{escape(title)}: no data</text></svg>'
    x_low, x_high = x_range
    height = max(HEIGHT, PAD_TOP + PAD_BOTTOM + 13 * len(filled) + 20)
    plot_w, plot_h = WIDTH - PAD_LEFT - CDF_PAD_RIGHT, height - PAD_TOP - PAD_BOTTOM

    def sx(x: float) -> float:
        return PAD_LEFT + (min(max(x, x_low), x_high) - x_low) / (x_high - x_low) * plot_w

    def sy(share: float) -> float:
        return PAD_TOP + plot_h - share * plot_h

    right = PAD_LEFT + plot_w
    parts = [
        f'<svg width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg" font-size="11">',
        f'<text x="{PAD_LEFT}" y="15" font-weight="bold">{escape(title)}</text>',
        f'<text x="12" y="{PAD_TOP + plot_h / 2}" transform="rotate(-90 12 {PAD_TOP + plot_h / 2})" '
        'text-anchor="middle">share at or below</text>',
    ]
    for i in range(5):
        y = sy(i / 4)
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{PAD_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{25 * i}%</text>'
        )
    ticks = int(round((x_high - x_low) / x_step))
    for i in range(ticks + 1):
        x = sx(x_low + i * x_step)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_TOP}" y2="{PAD_TOP + plot_h}" stroke="#f3f3f3"/>'
            f'<text x="{x:.1f}" y="{height - 18}" text-anchor="middle">{x_low + i * x_step:g}</text>'
        )
    parts.append(f'<text x="{PAD_LEFT + plot_w / 2}" y="{height - 4}" text-anchor="middle">{escape(x_label)}</text>')
    for x, label in markers:
        parts.append(
            f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{PAD_TOP}" y2="{PAD_TOP + plot_h}" '
            f'stroke="#888" stroke-dasharray="4 3"><title>{escape(label)}</title></line>'
            f'<text x="{sx(x):.1f}" y="{PAD_TOP - 4}" text-anchor="middle" fill="#888">{x:g}</text>'
        )
    for row, (index, label, values) in enumerate(filled):
        color = COLORS[index % len(COLORS)]  # by the series' place, drawn or not
        n = len(values)
        points = [(sx(x_low), sy(0.0))]
        for i, value in enumerate(values):
            if i + 1 < n and values[i + 1] == value:
                continue  # equal values make one step
            points += [(sx(value), points[-1][1]), (sx(value), sy((i + 1) / n))]
        points.append((sx(x_high), sy(1.0)))
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{coords}"/>')
        parts.append(f'<text x="{right + 8}" y="{PAD_TOP + 12 + 13 * row}" fill="{color}">{escape(label)} ({n})</text>')
    parts.append("</svg>")
    return "".join(parts)
