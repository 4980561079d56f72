"""Thresholds, JUnit and HTML from a result (pure), and the E-model command line."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree

import pytest

from testbed.report import html, junit
from testbed.report.thresholds import evaluate
from testbed.results import CallScores, CheckResult, DirectionScores, RunResult
from testbed.scenario.thresholds import Threshold
from tests.helpers.cli import run_cli
from tests.helpers.scores import network_stats, run_result


def direction(mos: float | None, loss: float = 0.0, p95: float = 20.0) -> DirectionScores:
    network = network_stats(loss, p95)
    return DirectionScores.model_validate(
        {"codec": "opus", "wideband": True, "mos_emodel": mos, "mos_pesq": mos, "network": network}
    )


def call(call_id: str, up: float | None, down: float | None, setup: float | None = 0.1) -> CallScores:
    return CallScores(
        id=call_id,
        name=call_id.split("-")[0],
        outcome="connected" if setup is not None else "failed",
        reason="" if setup is not None else "not connected within the setup timeout of 10s",
        setup_s=setup,
        codec="opus",
        dscp=46,
        directions={"client->gateway": direction(up), "gateway->client": direction(down)},
    )


VARIANTS = {"fifo": [call("call", 1.2, 2.0)], "ef-priority": [call("call", 4.4, 4.3)]}


def rule(**data) -> Threshold:
    return Threshold.model_validate(data)


def test_minimum_per_variant_checks_every_direction():
    checks = evaluate([rule(metric="mos_emodel", min=4.0)], VARIANTS)
    assert len(checks) == 4
    failed = [c for c in checks if not c.passed]
    assert {(c.variant, c.direction) for c in failed} == {("fifo", "client->gateway"), ("fifo", "gateway->client")}
    assert "fifo / call / client->gateway: mos_emodel 1.2 (needs >= 4" in failed[0].message


def test_gain_rule_compares_the_same_call_and_direction():
    checks = evaluate([rule(metric="mos_emodel", min=2.5, variant="ef-priority", over="fifo")], VARIANTS)
    assert [c.passed for c in checks] == [True, False]
    assert checks[1].value == pytest.approx(2.3)
    assert "gain +2.3" in checks[1].message


def test_unmeasured_metric_fails_with_the_reason():
    variants = {"v": [call("call", None, None, setup=None)]}
    checks = evaluate([rule(metric="mos_pesq", min=3.0), rule(metric="setup_time", max=2)], variants)
    assert not any(c.passed for c in checks)
    assert "setup timeout" in checks[0].message


def test_call_filter_and_units():
    variants = {"v": [call("a", 4.4, 4.4), call("b", 1.0, 1.0)]}
    assert all(c.passed for c in evaluate([rule(metric="mos_emodel", min=4, call="a")], variants))
    loss = evaluate([rule(metric="loss", max=1)], {"v": [call("a", 4, 4)]})
    assert all(c.passed and c.value == 0 for c in loss)


def result_with(checks: list[CheckResult]) -> RunResult:
    """The shared builder, but the first failure left out of the verdict (as these tests expect)."""
    result = run_result(VARIANTS, checks)
    result.verdict.first_failure = None
    return result


def test_junit_names_what_fell_short(tmp_path):
    checks = evaluate([rule(metric="mos_emodel", min=4.0)], VARIANTS)
    path = junit.write(result_with(checks), tmp_path / "junit.xml")
    root = ElementTree.parse(path).getroot()
    suites = {s.get("name"): s for s in root}
    assert suites["office.fifo"].get("failures") == "2" and suites["office.ef-priority"].get("failures") == "0"
    failure = suites["office.fifo"].find("testcase/failure")
    assert "fifo / call / client->gateway: mos_emodel 1.2" in failure.get("message")


def test_html_report_works_offline(tmp_path):
    """Its only script is plotly, written beside it: no CDN, nothing fetched from anywhere."""
    path = html.write(result_with(evaluate([rule(metric="mos_emodel", min=4.0)], VARIANTS)), tmp_path / "report.html")
    page = path.read_text()
    assert page.startswith("<!doctype html>") and "FAIL: 2 of 4" in page
    assert re.findall(r"<script[^>]*src=[\"']([^\"']+)", page) == ["plotly.min.js"]
    assert (tmp_path / "plotly.min.js").stat().st_size > 1_000_000
    assert "https://" not in page.replace("https://plotly.com", "") and "http://" not in page


@pytest.mark.parametrize(
    "args, r, mos",
    [
        ([], 93.2062, 4.409),
        (["--ta-ms", "200"], 90.16, None),
        (["--loss-pct", "2", "--ie", "0", "--bpl", "25.1"], 86.20, None),
    ],
)
def test_score_emodel_command(args, r, mos):
    base = {"--ta-ms": "0", "--loss-pct": "0"}
    for flag, value in zip(args[::2], args[1::2], strict=False):
        base[flag] = value
    argv = [arg for pair in base.items() for arg in pair]
    result = run_cli("score", "emodel", *argv, "--json")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    values = json.loads(out)
    assert set(values) == {"r", "mos"}
    assert values["r"] == pytest.approx(r, abs=0.01)
    if mos is not None:
        assert values["mos"] == pytest.approx(mos, abs=0.001)


def test_score_emodel_refuses_half_inputs():
    result = run_cli("score", "emodel", "--ta-ms", "100")
    assert result.returncode == 2 and "--loss-pct" in result.stderr
