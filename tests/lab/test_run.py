"""`testbed run` end to end: scores of an idle call, the CI gate failing a bad router template, re-scoring
a stored run, and the office demo's verdict (fifo vs ef-priority)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import jsonschema

from testbed.report.browser import view_report
from tests.helpers import REPO
from tests.helpers.lab import run_testbed


def test_idle_opus_call_scores_high_both_ways(registry, no_leftovers, tmp_path):
    scenario = tmp_path / "idle.yaml"
    scenario.write_text("name: idle\ncalls: [{name: call, from: client, to: gateway, codec: opus, duration: 10s}]\n")
    result = run_testbed("run", str(scenario), "--out", str(tmp_path / "out"), "--json", timeout=180)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema_version"] == 2
    directions = data["variants"][0]["calls"][0]["directions"]
    assert set(directions) == {"client->gateway", "gateway->client"}
    for name, scores in directions.items():
        assert scores["mos_pesq"] >= 4.2, (name, scores["mos_pesq"])
        assert scores["mos_emodel"] >= 4.2, (name, scores["mos_emodel"])
        assert scores["pesq_mode"] == "wb" and scores["network"]["loss"]["fraction"] == 0
    assert (tmp_path / "out" / "report.html").stat().st_size > 5000
    assert len(list((tmp_path / "out" / "default" / "audio").glob("*.wav"))) == 2 + 2  # heard, references
    live = [line for line in result.stderr.splitlines() if line.startswith("  variant default (1 of 1): ")]
    assert live and "s left in the run" in live[-1], result.stderr  # the live view's lines in a log
    assert any("lowest MOS estimate 4." in line for line in live), live  # from running counts, mid-call


GATED = """name: gated
links: {wan: {router: {rate: 10mbit}}}
calls: [{name: sales, from: client, to: gateway, start: 1s, duration: 6s}]
traffic: [{name: flood, kind: udp_cbr, from: client, to: gateway, rate: 25mbit, start: 0s, stop: 7s}]
variants:
  candidate: {router: {template: %s}}
thresholds:
  - {metric: mos_emodel, min: 3.5, variant: candidate}
"""


def test_bad_router_template_fails_the_gate(registry, no_leftovers, tmp_path):
    scenario = tmp_path / "gated.yaml"
    scenario.write_text(GATED % "dscp-bleach")
    junit = tmp_path / "ci" / "junit.xml"
    result = run_testbed("run", str(scenario), "--out", str(tmp_path / "out"), "--junit", str(junit), timeout=180)
    assert result.returncode == 1, result.stderr
    assert "FAIL" in result.stdout
    failures = [f.get("message") for f in ElementTree.parse(junit).getroot().iter("failure")]
    assert failures and all("candidate / sales / " in message for message in failures)
    assert any("client->gateway: mos_emodel" in message for message in failures)
    rescored = run_testbed("score", str(tmp_path / "out"), "--no-pesq", "--json", timeout=120)
    assert rescored.returncode == 1
    assert json.loads(rescored.stdout)["verdict"]["failed"] == len(failures)


def test_good_router_template_passes_the_gate(registry, no_leftovers, tmp_path):
    """... and its console summary, in a log (stdout a pipe), keeps names wider than 80 columns whole."""
    variant, call = "candidate-ef-priority-for-the-branch-offices", "sales-floor-softphone"
    scenario = tmp_path / "gated.yaml"
    scenario.write_text((GATED % "ef-priority").replace("candidate", variant).replace("sales", call))
    result = run_testbed("run", str(scenario), "--out", str(tmp_path / "out"), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(variant)]
    assert sorted(row[2] for row in rows) == ["client->gateway", "gateway->client"], result.stdout
    assert all(row[1] == "sales-floor-softphone" for row in rows) and "…" not in result.stdout


def test_office_demo_verdict(registry, no_leftovers, tmp_path):
    """What `make demo` shows: ef-priority keeps both directions at MOS >= 4, fifo does not; and its report
    in headless Chromium: no console error, every chart drawn, a player per variant and call direction
    whose file loads, beside its reference."""
    scenario = tmp_path / "office.yaml"  # the demo, plus Microsoft Teams' network targets
    scenario.write_text((REPO / "scenarios" / "office.yaml").read_text() + "  - {preset: teams}\n")
    result = run_testbed("run", str(scenario), "--out", str(tmp_path / "out"), "--json", timeout=300)
    assert result.stdout, result.stderr
    data = json.loads(result.stdout)
    demo = [c for c in data["thresholds"] if "(teams)" not in c["rule"]]
    assert demo and all(c["passed"] for c in demo), data["verdict"]  # the demo's own verdict: PASS
    teams = [c for c in data["thresholds"] if "(teams)" in c["rule"]]
    assert all(c["passed"] for c in teams if c["variant"] == "ef-priority")
    failed = [c["message"] for c in teams if not c["passed"]]
    assert failed and all(m.startswith("fifo / ") and "[teams]" in m for m in failed)
    assert any("loss worst window" in m and "s of the call" in m for m in failed), failed  # the window named
    assert result.returncode == 1  # teams fails fifo, so the run fails
    variants = {v["name"]: v for v in data["variants"]}
    for name, limit in (("ef-priority", lambda mos: mos >= 4.0), ("fifo", lambda mos: mos <= 2.5)):
        for direction in variants[name]["calls"][0]["directions"].values():
            for metric in ("mos_emodel", "mos_pesq"):
                assert limit(direction[metric]), (name, metric, direction[metric])

    stored = json.loads((tmp_path / "out" / "result.json").read_text())
    schema = json.loads((REPO / "docs" / "schemas" / "result.schema.json").read_text())
    jsonschema.validate(stored, schema)  # the published schema describes what a run writes
    assert stored["environment"]["backend"] == ["netns"]
    assert stored["environment"]["scored_on"]["host"] == stored["environment"]["host"]

    report = tmp_path / "out" / "report.html"
    view = view_report(report, tmp_path / "images")
    assert view.console_errors == []
    assert view.charts == report.read_text().count('class="plotly-graph-div"') >= 2 * 3 + 2 * 2
    for name, variant in variants.items():
        for direction, scores in variant["calls"][0]["directions"].items():
            heard, reference = f"{name}/{scores['audio_file']}", f"{name}/{scores['reference_file']}"
            assert view.audio[heard] > 5 and view.audio[reference] > 5, (direction, view.audio)
    assert len(view.audio) == 2 * 2 * 2
    assert (tmp_path / "images" / "report.png").stat().st_size > 50_000
    assert len(view.images) == 1 + view.charts
