"""The console summary, HTML report and JUnit for directions a browser listened to, and the DSCP each
sender put on the wire: pure, from hand-made scores."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from typing import Any, get_args

import pytest
from rich.console import Console

from testbed.report import html, junit
from testbed.report.console import browser_table, print_summary, summary_table
from testbed.report.figures import browser_listeners, browser_versions, candidate_pair, dscp_values, ef_on_wire, percent
from testbed.results import METRICS, UNITS, CallScores, DirectionScores, RunResult, metric
from testbed.results.scores import BrowserFigures, UnscoredDirection
from testbed.scenario.thresholds import Metric
from tests.helpers.scores import environment, network_stats

VERSION = "Chromium 156.0.8078.129 built on Debian GNU/Linux 12 (bookworm)"


def network(p95: float = 20.0) -> dict[str, Any]:
    return network_stats(p95=p95)


def dscp(ef: float) -> dict[str, Any]:
    values = {"46": ef, "0": round(1 - ef, 4)} if 0 < ef < 1 else {"46" if ef else "0": 1.0}
    return {"packets": 325, "marked_ef": ef, "values": values}


def browser(**changes: Any) -> dict[str, Any]:
    figures = {
        "packets_received": 325,
        "packets_lost": 0,
        "packets_discarded": 0,
        "jitter_ms": 1.0,
        "mean_jitter_buffer_ms": 56.19,
        "target_jitter_buffer_ms": 49.16,
        "concealed_fraction": 0.00578,
        "silent_concealed_samples": 240,
        "concealment_events": 1,
        "inserted_samples": 1672,
        "removed_samples": 1848,
        "fec_packets_received": 0,
        "fec_packets_discarded": 0,
        "candidate_pair": {"local_type": "host", "remote_type": "host", "protocol": "udp", "relay_protocol": None},
        "version": VERSION,
        "mos_pesq": 4.104,
        "played_s": 6.6,
    }
    return figures | changes


MODEL = {
    "mos_emodel": 4.377,
    "mos_pesq": 4.58,
    "ta_ms": 54.86,
    "ppl_percent": 0.0,
    "concealed_fraction": 0.0,
    "mean_buffer_delay_ms": 28.22,
    "pesq_note": "",
}


def model_heard(ef: float = 1.0, delay_source: str = "application send time", p95: float = 20.0) -> DirectionScores:
    return DirectionScores.model_validate(
        {
            "codec": "opus",
            "wideband": True,
            "network": network(p95),
            "mos_emodel": 4.375,
            "mos_pesq": 3.99,
            "delay_source": delay_source,
            "dscp": dscp(ef),
        }
    )


def chrome_heard(ef: float = 1.0, **browser_changes: Any) -> DirectionScores:
    return DirectionScores.model_validate(
        {
            "codec": "opus",
            "wideband": True,
            "network": network(),
            "ta_ms": 82.83,
            "ppl_percent": 0.578,
            "mos_emodel": 4.183,
            "mos_pesq": 4.104,
            "delay_source": "application send time",
            "dscp": dscp(ef),
            "listener": "chromium",
            "model": MODEL,
            "browser": browser(**browser_changes),
        }
    )


def call(call_id: str, directions: dict[str, DirectionScores | UnscoredDirection]) -> CallScores:
    return CallScores(
        id=call_id,
        name=call_id,
        outcome="connected",
        reason="",
        setup_s=3.52,
        codec="opus",
        dscp=46,
        directions=directions,
    )


def run(*calls: CallScores, variant: str = "default") -> RunResult:
    return RunResult.model_validate(
        {
            "scenario": {"name": "browser", "description": "", "file": "browser.yaml"},
            "environment": environment(),
            "variants": [
                {
                    "name": variant,
                    "variant": variant,
                    "repetition": 1,
                    "description": "",
                    "router_template": None,
                    "t0": 0.0,
                    "duration_s": 10.0,
                    "calls": list(calls),
                    "timeline": [],
                    "traffic": [],
                    "queues": {"classes": {}, "samples": []},
                    "impairment_engine": None,
                    "agents": {},
                }
            ],
            "thresholds": [],
            "verdict": {"passed": True, "checks": 0, "failed": 0, "first_failure": None},
        }
    )


BROWSER_RUN = run(
    call("up", {"client->gateway": model_heard(1.0, "sender's interface tap"), "gateway->client": chrome_heard(1.0)}),
    call("down", {"client->gateway": chrome_heard(1.0), "gateway->client": model_heard(0.0)}),
)
MODEL_RUN = run(
    call("plain", {"client->gateway": model_heard(1.0), "gateway->client": UnscoredDirection(note="no records")})
)


def text(renderable: Any, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


def rows_of(output: str) -> dict[str, list[str]]:
    """Table body lines keyed by 'call direction', split on whitespace."""
    rows = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) > 3 and words[0] == "default":
            rows[f"{words[1]} {words[2]}"] = words
    return rows


# --- shared figures


@pytest.mark.parametrize(
    "fraction, expected",
    [(1.0, "100%"), (0.0, "0%"), (0.5, "50.0%"), (0.9996, "99.9%"), (0.0001, "0.1%"), (None, "-")],
)
def test_a_partial_share_never_prints_as_all_or_nothing(fraction, expected):
    assert percent(fraction) == expected


def test_ef_on_wire_and_dscp_values():
    assert ef_on_wire(model_heard(1.0)) == "100%" and ef_on_wire(model_heard(0.0)) == "0%"
    assert ef_on_wire(UnscoredDirection(note="x")) == "-" and ef_on_wire(None) == "-"
    no_tap = DirectionScores.model_validate({"codec": "opus", "wideband": True, "dscp": {}})
    assert no_tap.dscp is None and ef_on_wire(no_tap) == "-" and dscp_values(no_tap.dscp) == "-"
    mixed = model_heard(0.997).dscp
    assert dscp_values(mixed) == "EF (46) 99.7%, BE (0) 0.3%"
    assert dscp_values(model_heard(0.0).dscp) == "BE (0) 100%"


@pytest.mark.parametrize(
    "pair, expected",
    [
        ({"local_type": "host", "remote_type": "host", "protocol": "udp", "relay_protocol": None}, "host/udp"),
        ({"local_type": "srflx", "remote_type": "host", "protocol": "udp", "relay_protocol": None}, "srflx-host/udp"),
        ({"local_type": "relay", "remote_type": "relay", "protocol": "udp", "relay_protocol": "tcp"}, "relay(tcp)/udp"),
        ({"local_type": None, "remote_type": None, "protocol": None, "relay_protocol": None}, "-"),
        ({}, "-"),
    ],
)
def test_candidate_pair(pair, expected):
    assert candidate_pair(BrowserFigures.model_validate(browser(candidate_pair=pair))) == expected


def test_browser_listeners_and_versions():
    rows = browser_listeners(BROWSER_RUN)
    assert [(r.call.id, r.direction) for r in rows] == [("up", "gateway->client"), ("down", "client->gateway")]
    assert rows[0].concealed == (0.00578, 0.0) and rows[0].buffer_ms == (56.19, 28.22)
    assert rows[0].pesq == (4.104, 4.58) and rows[0].emodel == (4.183, 4.377)
    assert browser_versions(BROWSER_RUN) == [VERSION] and browser_versions(MODEL_RUN) == []


# --- metrics


def test_marked_ef_metric_is_a_percentage_of_the_senders_packets():
    plain = MODEL_RUN.variants[0].calls[0]
    assert metric(plain, model_heard(1.0), "marked_ef") == 100.0
    assert metric(plain, model_heard(0.0), "marked_ef") == 0.0
    assert metric(plain, model_heard(0.25), "marked_ef") == 25.0
    assert metric(plain, plain.directions["gateway->client"], "marked_ef") is None
    bare = DirectionScores.model_validate({"codec": "opus", "wideband": True})
    assert metric(plain, bare, "marked_ef") is None
    assert "marked_ef" in METRICS and UNITS["marked_ef"] == "%"


def test_every_threshold_metric_has_a_unit_and_a_value():
    assert set(get_args(Metric)) <= set(METRICS)


def test_headline_mos_of_a_browser_direction_is_the_browsers():
    up = BROWSER_RUN.variants[0].calls[0]
    assert metric(up, up.directions["gateway->client"], "mos_pesq") == 4.104
    assert metric(up, up.directions["gateway->client"], "mos_emodel") == 4.183


# --- console


def test_main_table_marks_browser_rows_and_shows_ef_on_the_wire():
    output = text(summary_table(BROWSER_RUN))
    rows = rows_of(output)
    assert set(rows) == {"up client->gateway", "up gateway->client*", "down client->gateway*", "down gateway->client"}
    assert rows["up gateway->client*"][3:5] == ["4.18", "4.10"]
    assert rows["up gateway->client*"][-1] == "100%" and rows["down gateway->client"][-1] == "0%"
    assert rows["up client->gateway"][-2] == "3.52"  # setup in seconds
    assert "* MOS of the browser's own playout (Chromium); the model's below" in output
    assert "EF on" in output and "wire" in output


def test_main_table_without_browsers_has_no_footnote_and_dashes_for_unscored():
    output = text(summary_table(MODEL_RUN))
    rows = rows_of(output)
    assert rows["plain gateway->client"][3:] == ["-"] * 5 + ["3.52", "-"]
    assert "*" not in output and browser_table(MODEL_RUN) is None


def test_delay_from_rtp_timestamps_is_marked():
    result = run(
        call(
            "rtp",
            {
                "a->b": model_heard(1.0, "RTP timestamps anchored at the first packets", p95=31.25),
                "b->a": model_heard(1.0, "sender's interface tap", p95=12.0),
            },
        )
    )
    output = text(summary_table(result))
    rows = rows_of(output)
    assert rows["rtp a->b"][6] == "~31.2" and rows["rtp b->a"][6] == "12.0"
    assert "~ delay from RTP timestamps anchored at the first packets" in output


def test_browser_table_sets_chrome_beside_the_model():
    table = browser_table(BROWSER_RUN)
    assert table is not None
    output = text(table)
    assert "browser listeners: Chrome vs the model" in output
    rows = rows_of(output)
    assert rows["up gateway->client"][3:] == ["0.6/0.0", "56/28", "4.10/4.58", "host/udp"]
    assert rows["down client->gateway"][3:] == ["0.6/0.0", "56/28", "4.10/4.58", "host/udp"]
    assert "cells: Chrome/model" in output


def test_browser_table_without_model_or_figures_prints_dashes():
    bare = chrome_heard()
    bare = bare.model_copy(update={"model": None, "browser": None})
    table = browser_table(run(call("x", {"a->b": bare})))
    assert table is not None
    assert rows_of(text(table))["x a->b"][3:] == ["-/-", "-/-", "-/-", "-"]


def summary(result: RunResult, terminal: bool = False) -> str:
    console = Console(width=80, record=True, color_system=None, force_terminal=terminal, file=open("/dev/null", "w"))  # noqa: SIM115
    print_summary(result, console)
    return console.export_text()


@pytest.mark.parametrize("variant", ["default", "ef-priority"])
def test_summary_fits_80_columns(variant):
    output = summary(
        run(call("sales", {"gateway->client": chrome_heard(), "client->gateway": model_heard(0.0)}), variant=variant)
    )
    assert max(len(line.rstrip()) for line in output.splitlines()) <= 80
    assert "…" not in output  # nothing truncated
    rows = rows_of(output.replace(variant, "default"))
    assert rows["sales gateway->client*"][-1] == "100%" and rows["sales client->gateway"][-1] == "0%"
    assert "browser listeners: Chrome vs the model" in output
    assert output.rstrip().endswith("no thresholds in the scenario: nothing to pass or fail")


def test_long_names_fold_in_a_terminal_instead_of_losing_their_ends():
    direction = "a-long-node-name->another-long-node"
    output = summary(
        run(call("a-very-long-call-name", {direction: chrome_heard()}), variant="a-long-variant-name"), terminal=True
    )
    assert max(len(line.rstrip()) for line in output.splitlines()) <= 80
    assert "…" not in output
    main = output[: output.index("browser listeners")]
    assert "node*" in main  # the direction's mark survives, on a folded line


# --- HTML and JUnit


def test_html_shows_wire_delay_source_and_chrome_beside_the_model():
    page = html.render(BROWSER_RUN)
    assert "<th>EF on wire</th><th>heard by</th>" in page
    assert "<h2>On the wire</h2>" in page
    assert "<td>EF (46) 100%</td><td>sender&#x27;s interface tap</td>" in page
    assert "<td>BE (0) 100%</td><td>application send time</td>" in page
    assert "<h2>Browser listeners: Chrome vs the model</h2>" in page and f"<p>{VERSION}</p>" in page
    block = page[page.index("<h3>default / up / gateway-&gt;client</h3>") :]
    block = block[: block.index("</div>")]
    assert "<th>Chromium (headline)</th><th>playout model</th>" in block
    for name, ours, theirs in [
        ("concealed fraction", "0.58%", "0.00%"),
        ("mean buffer delay", "56.2 ms", "28.2 ms"),
        ("Ta (E-model)", "82.8 ms", "54.9 ms"),
    ]:
        assert f'<tr><th>{name}</th><td class="num">{ours}</td><td class="num">{theirs}</td></tr>' in block
    assert (
        '<tr><th>MOS PESQ</th><td class="num good" title="great">4.10</td>'
        '<td class="num good" title="excellent">4.58</td></tr>' in block
    )
    assert (
        '<tr><th>MOS E-model</th><td class="num good" title="great">4.18</td>'
        '<td class="num good" title="excellent">4.38</td></tr>' in block
    )
    assert "candidate pair host/udp" in block and "concealment events 1" in block
    assert VERSION not in block  # one version: said once above the blocks


def test_html_names_versions_per_block_when_they_differ():
    other = "Chromium 157.0.1.2"
    result = run(call("x", {"a->b": chrome_heard(), "b->a": chrome_heard(version=other)}))
    page = html.render(result)
    assert f"<p>{VERSION}, {other}</p>" in page
    assert page.count(other) == 2


def test_html_without_browsers_has_no_browser_section():
    page = html.render(MODEL_RUN)
    assert "Browser listeners: Chrome vs the model</h2>" not in page
    assert "<h2>On the wire</h2>" in page and "<td>playout model</td>" in page


def test_junit_says_who_listened_and_the_ef_share(tmp_path):
    root = ElementTree.parse(junit.write(BROWSER_RUN, tmp_path / "junit.xml")).getroot()
    out = "\n".join(e.text or "" for e in root.iter("system-out"))
    assert "gateway->client: MOS E-model 4.183, PESQ 4.104 (heard by Chromium), EF on wire 100%" in out
    assert "gateway->client: MOS E-model 4.375, PESQ 3.99, EF on wire 0%" in out


def test_a_wide_summary_stays_whole_in_a_log():
    """Output that is not a terminal (rich assumes 80 columns there): names longer than the table can
    fold stay on one line, whole, rather than folded or cut."""
    long_variant = "candidate-ef-priority-with-policed-voice-class"
    output = summary(
        run(
            call("sales-floor-softphone-number-12", {"client->gateway": model_heard(0.0)}),
            variant=long_variant,
        )
    )
    row = next(line for line in output.splitlines() if line.startswith(long_variant))
    assert "sales-floor-softphone-number-12" in row and "client->gateway" in row
    assert "…" not in output
    assert max(len(line.rstrip()) for line in output.splitlines()) > 80  # its own width, not folded to 80
