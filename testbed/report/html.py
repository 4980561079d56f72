"""``report.html``: one self-contained page (inline SVG, no scripts, no external files) per run.

MOS per call and variant side by side; per call direction, one-way delay, loss and MOS per second with
every variant in the same plot; per router class, queue backlog and drops per second; timeline events
as dashed vertical lines in every time plot. A run with many calls adds a Distribution section
(``distribution_html``) and plots per second only each variant's worst directions.
"""

from __future__ import annotations

import os
from pathlib import Path

from testbed.report import charts
from testbed.report.charts import Series, line_chart
from testbed.report.charts import escape as _escape
from testbed.report.distribution_html import distribution_section, plotted_directions
from testbed.report.figures import (
    BANDS_SOURCE,
    MOS_BANDS,
    BrowserListener,
    browser_listeners,
    browser_versions,
    candidate_pair,
    dscp_values,
    ef_on_wire,
    listener_name,
    mos_band,
    mos_grade,
)
from testbed.report.listen import listen_section
from testbed.report.paths import path_section
from testbed.results import RunResult, VariantResult, metric
from testbed.results.scores import CallScores, DirectionScores

QUEUE_TIME = "seconds from the variant's start"
SHADE = {"good": "#2ca02c", "fair": "#ffbf00", "bad": "#d62728"}
MOS_SHADES = [  # the MOS bands (figures.MOS_BANDS), shaded in the MOS charts
    (max(band.above, 1.0), 4.6 if index == 0 else MOS_BANDS[index - 1].above, band.name, SHADE[band.css])
    for index, band in enumerate(MOS_BANDS)
]
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; } h3 { font-size: 1em; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.good { background: #dff0d8; } .fair { background: #fcf8e3; } .bad { background: #f2dede; }
.pass { color: #2a7a2a; font-weight: bold; } .fail { color: #b02a2a; font-weight: bold; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; } .plot { flex: 0 0 auto; border: 1px solid #ddd; }
.nodata { width: 640px; padding: 1em; color: #666; }
.note { color: #666; font-size: 0.9em; }
.blocks { display: flex; flex-wrap: wrap; gap: 0 2em; }
"""


def _cell(value: float | None, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return '<td class="num">-</td>'
    return f'<td class="num">{value:.{digits}f}{suffix}</td>'


def _markers(variant: VariantResult) -> list[tuple[float, str]]:
    return [
        (event.effective, event.what) for event in variant.timeline if not event.what.startswith(("call ", "calls "))
    ]


def mos_table(result: RunResult) -> str:
    rows = [
        "<table><tr><th>variant</th><th>call</th><th>direction</th><th>MOS E-model</th><th>MOS PESQ</th>"
        "<th>ViSQOL</th>"
        "<th>R</th><th>Ta</th><th>effective loss</th><th>network loss</th><th>p95 delay</th><th>jitter</th>"
        "<th>setup</th><th>talk</th><th>EF on wire</th><th>heard by</th><th>outcome</th></tr>"
    ]
    for variant in result.variants:
        for call in variant.calls:
            for direction, s in call.directions.items():
                scored = s if isinstance(s, DirectionScores) else None
                mos_e, mos_p = metric(call, s, "mos_emodel"), metric(call, s, "mos_pesq")
                rows.append(
                    f"<tr><td>{_escape(variant.name)}</td><td>{_escape(call.id)}</td><td>{_escape(direction)}</td>"
                    f"{_mos_cell(mos_e)}{_mos_cell(mos_p)}"
                    f"{_cell(scored.mos_visqol if scored else None, 2)}"
                    f"{_cell(scored.r if scored else None, 1)}{_cell(scored.ta_ms if scored else None, 0, ' ms')}"
                    f"{_cell(scored.ppl_percent if scored else None, 2, '%')}"
                    f"{_cell(metric(call, s, 'loss'), 2, '%')}"
                    f"{_cell(metric(call, s, 'p95_delay'), 1, ' ms')}"
                    f"{_cell(metric(call, s, 'jitter'), 1, ' ms')}"
                    f"{_cell(None if call.setup_s is None else call.setup_s * 1000, 0, ' ms')}"
                    f"{_cell(call.talk_s, 1, ' s')}"
                    f'<td class="num" title="{_escape(dscp_values(scored.dscp if scored else None))}">'
                    f"{_escape(ef_on_wire(s))}</td>"
                    f"<td>{_escape(listener_name(scored.listener) if scored else '-')}</td>"
                    f"<td>{_escape(call.outcome)} {_escape(call.reason)}</td></tr>"
                )
    rows.append("</table>")
    return "".join(rows)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def wire_table(result: RunResult) -> str:
    """Per direction: the DSCP its sender really put on the wire (counted on the sender's own interface)
    and where its one-way delay's send times came from."""
    rows = [
        "<table><tr><th>variant</th><th>call</th><th>direction</th><th>RTP packets sent</th>"
        "<th>DSCP on the wire</th><th>one-way delay: send times from</th></tr>"
    ]
    for variant in result.variants:
        for call in variant.calls:
            for direction, s in call.scored().items():
                packets = s.dscp.packets if s.dscp is not None else None
                rows.append(
                    f"<tr><td>{_escape(variant.name)}</td><td>{_escape(call.id)}</td><td>{_escape(direction)}</td>"
                    f"{_cell(packets, 0)}<td>{_escape(dscp_values(s.dscp))}</td>"
                    f"<td>{_escape(s.delay_source)}</td></tr>"
                )
    rows.append("</table>")
    return "".join(rows)


def browser_block(row: BrowserListener, with_version: bool = True) -> str:
    """One direction a browser listened to: the browser's own figures beside the playout model's, and
    what else its getStats() said at media stop."""
    s, b, m = row.scores, row.browser, row.model

    def ratio(value: float | None) -> str:
        return _cell(None if value is None else 100 * value, 2, "%")

    figures = [
        ("concealed fraction", *map(ratio, row.concealed)),
        ("mean buffer delay", *(_cell(v, 1, " ms") for v in row.buffer_ms)),
        ("MOS PESQ", *map(_mos_cell, row.pesq)),
        ("MOS E-model", *map(_mos_cell, row.emodel)),
        ("Ta (E-model)", *(_cell(v, 1, " ms") for v in row.ta_ms)),
        ("Ppl (E-model)", *(_cell(v, 2, "%") for v in row.ppl_percent)),
    ]
    rows = "".join(f"<tr><th>{_escape(name)}</th>{ours}{theirs}</tr>" for name, ours, theirs in figures)
    details = []
    if b is not None:
        if with_version:
            details.append(b.version or "unknown version")
        details += [
            f"candidate pair {candidate_pair(b)}",
            f"packets received {b.packets_received}, lost {b.packets_lost}, discarded {b.packets_discarded}",
            f"jitter {_fmt(b.jitter_ms)} ms, target buffer {_fmt(b.target_jitter_buffer_ms)} ms",
            f"concealment events {b.concealment_events}, FEC packets received {b.fec_packets_received}",
            f"{b.played_s:.1f} s of playout scored",
        ]
        details += [f"PESQ: {b.pesq_note}"] if b.pesq_note else []
    details += [f"model PESQ: {m.pesq_note}"] if m is not None and m.pesq_note else []
    return (
        f"<div><h3>{_escape(row.variant)} / {_escape(row.call.id)} / {_escape(row.direction)}</h3>"
        f"<table><tr><th></th><th>{_escape(listener_name(s.listener))} (headline)</th>"
        f"<th>playout model</th></tr>{rows}</table>"
        f"<p class='note'>{'<br>'.join(_escape(d) for d in details) or '-'}</p></div>"
    )


def browser_section(result: RunResult) -> str:
    """Where a browser was the listener: its real NetEq beside the model, per direction ('' when none)."""
    rows = browser_listeners(result)
    if not rows:
        return ""
    versions = browser_versions(result)
    return (
        "<h2>Browser listeners: Chrome vs the model</h2>"
        f"<p>{_escape(', '.join(versions) or 'unknown browser version')}</p>"
        "<p class='note'>The headline MOS of these directions is the browser's own playout: PESQ of what it "
        "played, and the E-model with its mean jitter-buffer delay in Ta and its concealed fraction as Ppl. "
        "The playout model's figures for the same packets stand beside them. Mean buffer delay: Chrome's "
        "jitterBufferDelay / jitterBufferEmittedCount, the model's mean buffer delay; concealed fraction: "
        "Chrome's concealedSamples / totalSamplesReceived, the model's lost and late frames. Chrome's "
        "figures are its getStats() at media stop.</p><div class='blocks'>"
        + "".join(browser_block(row, with_version=len(versions) > 1) for row in rows)
        + "</div>"
    )


def _mos_cell(value: float | None) -> str:
    """A MOS coloured and titled by its band (``figures.MOS_BANDS``)."""
    if value is None:
        return '<td class="num">-</td>'
    return f'<td class="num {mos_grade(value)}" title="{mos_band(value).name}">{value:.2f}</td>'


def direction_plots(result: RunResult) -> str:
    """Per call direction: delay, loss and MOS per second, all variants in each plot."""
    keys: list[tuple[str, str]] = []
    wanted = plotted_directions(result)  # a run with many calls: its worst directions only
    for variant in result.variants:
        for call in variant.calls:
            for direction in call.directions:
                if (call.id, direction) not in keys and (wanted is None or (call.id, direction) in wanted):
                    keys.append((call.id, direction))
    parts = []
    for call_id, direction in keys:
        delay: list[Series] = []
        loss: list[Series] = []
        mos: list[Series] = []
        markers: list[tuple[float, str]] = []
        for variant in result.variants:
            found = next((c for c in variant.calls if c.id == call_id), None)
            scores = found.directions.get(direction) if found else None
            offset = _call_offset(variant, found)
            if isinstance(scores, DirectionScores) and scores.network is not None:
                network = scores.network.per_second
                xs = [offset + t for t in network.start_s]
                delay.append((variant.name, xs, network.mean_delay_ms))
                loss.append((variant.name, xs, [None if f is None else 100 * f for f in network.loss_fraction]))
            if isinstance(scores, DirectionScores):
                per_second = scores.per_second
                mos.append((variant.name, [offset + s for s in per_second.second], list(per_second.mos_emodel)))
            markers += _markers(variant)
        parts.append(
            f"<h3>{_escape(call_id)}: {_escape(direction)}</h3><div class='plots'>"
            + line_chart("one-way delay (mean per second)", "ms", delay, markers)
            + line_chart("network loss per second", "%", loss, markers, y_min=0)
            + line_chart("MOS (E-model, 3 s window)", "MOS", mos, markers, y_min=1, y_max=4.6, bands=MOS_SHADES)
            + "</div>"
        )
    return "".join(parts)


def _plotted_note(result: RunResult) -> str:
    if plotted_directions(result) is None:
        return ""
    return " With this many calls only the worst directions of each variant (under Worst calls) are plotted."


def _call_offset(variant: VariantResult, call: CallScores | None) -> float:
    """Seconds from the variant's start to the call's first packet (per-second series start there)."""
    if call is None:
        return 0.0
    connected = next((e.effective for e in variant.timeline if e.what == f"call {call.id} connected"), None)
    return connected if connected is not None else 0.0


def queue_plots(result: RunResult) -> str:
    """Backlog and drops per second of every router class, per variant and interface."""
    parts = []
    for variant in result.variants:
        samples = [s for s in variant.queues.samples if s.object == "class"]
        for node, interfaces in variant.queues.classes.items():
            for interface, names in interfaces.items():
                backlog: list[Series] = []
                drops: list[Series] = []
                for handle, name in names.items():
                    series = sorted(
                        (s for s in samples if s.node == node and s.interface == interface and s.handle == handle),
                        key=lambda sample: sample.time,
                    )
                    xs = [s.time for s in series]
                    backlog.append((name, xs, [s.backlog_packets for s in series]))
                    drops.append((name, xs[1:], [b.drops - a.drops for a, b in zip(series, series[1:], strict=False)]))
                markers = _markers(variant)
                parts.append(
                    f"<h3>{_escape(variant.name)}: {_escape(node)} {_escape(interface)} egress</h3>"
                    "<div class='plots'>"
                    + line_chart("queue backlog per class", "packets", backlog, markers, x_label=QUEUE_TIME)
                    + line_chart("drops per second per class", "packets", drops, markers, x_label=QUEUE_TIME)
                    + "</div>"
                )
    return "".join(parts) or "<p class='note'>No router classes were sampled.</p>"


def traffic_table(result: RunResult) -> str:
    rows = ["<table><tr><th>variant</th><th>flow</th><th>kind</th><th>from</th><th>to</th><th>achieved</th></tr>"]
    for variant in result.variants:
        for flow in variant.traffic:
            rate = "-" if flow.bps is None else f"{flow.bps / 1e6:.2f} Mbit/s"
            rows.append(
                f"<tr><td>{_escape(variant.name)}</td><td>{_escape(flow.name)}</td>"
                f"<td>{_escape(flow.kind)}</td><td>{_escape(flow.from_)}</td><td>{_escape(flow.to)}</td>"
                f'<td class="num">{rate}</td></tr>'
            )
    rows.append("</table>")
    return "".join(rows)


def thresholds_section(result: RunResult) -> str:
    verdict = result.verdict
    if not verdict.checks:
        return "<p>No thresholds in the scenario.</p>"
    head = (
        f'<p class="pass">PASS: all {verdict.checks} checks met</p>'
        if verdict.passed
        else f'<p class="fail">FAIL: {verdict.failed} of {verdict.checks} checks fell short</p>'
    )
    rows = ["<table><tr><th>result</th><th>check</th></tr>"]
    for check in result.thresholds:
        mark = '<span class="pass">pass</span>' if check.passed else '<span class="fail">FAIL</span>'
        rows.append(f"<tr><td>{mark}</td><td>{_escape(check.message)}</td></tr>")
    return head + "".join(rows) + "</table>"


def render(result: RunResult, script_prefix: str = "") -> str:
    scenario = result.scenario
    environment = result.environment
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_escape(scenario.name)} - voip-testbed"
        f"</title><style>{STYLE}</style>{charts.script_tag(script_prefix)}</head><body>"
        f"<h1>{_escape(scenario.name)}</h1><p>{_escape(scenario.description)}</p>"
        f"<p class='note'>{_escape(scenario.file)} on {_escape(environment.host)}, kernel "
        f"{_escape(environment.kernel)}, {_escape(', '.join(environment.backend))} backend, impairments by "
        f"{_escape(', '.join(environment.impairment_engine))}"
        f"{f', {environment.parallel} variant runs at once' if environment.parallel > 1 else ''}. "
        "MOS E-model is the ITU-T G.107 planning estimate from the measured network (G.107.1 wideband scale "
        "for Opus and G.722); MOS PESQ is ITU-T P.862 on the audio a listener would have heard. Where a "
        "browser was the listener ('heard by'), both are of the browser's own playout; the model's figures "
        "are under Browser listeners.</p>"
        f"<h2>Verdict</h2>{thresholds_section(result)}{distribution_section(result)}"
        f"<h2>Calls</h2>{mos_table(result)}<p class='note'>Colours: {_escape(BANDS_SOURCE)} (hover a MOS for "
        "its band); green from good, yellow fair, red degraded.</p>"
        f"{listen_section(result)}"
        "<h2>On the wire</h2><p class='note'>The DSCP each sender really marked its RTP with, counted on its "
        "own interface, and where each direction's send times for one-way delay came from.</p>"
        f"{wire_table(result)}{browser_section(result)}{path_section(result)}"
        f"<h2>Per second</h2><p class='note'>Dashed lines: timeline events.{_plotted_note(result)}</p>"
        f"{direction_plots(result)}"
        f"<h2>Router queues</h2>{queue_plots(result)}"
        f"<h2>Cross traffic</h2>{traffic_table(result)}"
        "</body></html>"
    )


def write(result: RunResult, path: Path, script_dir: Path | None = None) -> Path:
    """``report.html`` and the plotly script its charts use (``charts.write_script``): beside it, or in
    ``script_dir`` (a sweep's trials share one copy at the sweep's top, not 4.6 MB each)."""
    script_dir = script_dir or path.parent
    charts.write_script(script_dir)
    prefix = os.path.relpath(script_dir, path.parent).replace(os.sep, "/") + "/"
    path.write_text(render(result, "" if prefix == "./" else prefix))
    return path
