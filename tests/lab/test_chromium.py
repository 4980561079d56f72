"""Chromium as a call endpoint, for real: the browser placing and answering calls against aiortc, what it
played out scored against the model, the DSCP it really puts on the wire, the office verdict with a
browser client, nothing on the wire but the call, and nothing left behind on success, failure and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import testbed
from testbed import scratch
from testbed.media.tap.records import load_records
from tests.helpers import REPO, require
from tests.helpers.lab import browser_processes, rest_of_output, run_testbed, start_testbed, wait_for_line

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(autouse=True)
def _browser():
    require("chromium", CHROMIUM.exists(), "Debian's chromium package (make setup installs it)")


def run_json(scenario: Path, out: Path, *args: str, timeout: float = 300) -> dict[str, Any]:
    result = run_testbed("run", str(scenario), "--out", str(out), "--json", *args, timeout=timeout)
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


def directions(data: dict[str, Any], variant: int = 0, call: str | None = None) -> dict[str, dict[str, Any]]:
    calls = data["variants"][variant]["calls"]
    chosen = next(c for c in calls if call is None or c["id"] == call)
    return chosen["directions"]


ONE_CALL = "name: %s\ncalls: [{name: rep, from: client, to: gateway, duration: %s, endpoint: {from: chromium}}]\n"
BOTH_WAYS = """name: browser
calls:
  - {name: up, from: client, to: gateway, duration: 10s, endpoint: {from: chromium}}
  - {name: down, from: client, to: gateway, duration: 10s, endpoint: {to: chromium}}
"""


def test_browser_calls_score_high_both_ways(registry, no_leftovers, tmp_path):
    """Chromium -> aiortc and aiortc -> Chromium on an idle lab: PESQ-WB >= 3.8 every way, a browser
    listener's headline is its own playout with the model's figures beside it, versions recorded."""
    scenario = tmp_path / "browser.yaml"
    scenario.write_text(BOTH_WAYS)
    data = run_json(scenario, tmp_path / "out")
    for call in ("up", "down"):
        for label, d in directions(data, call=call).items():
            assert d["mos_pesq"] is not None and d["mos_pesq"] >= 3.8, (call, label, d["mos_pesq"], d["pesq_note"])
            assert d["pesq_mode"] == "wb"
            assert d["dscp"]["marked_ef"] >= 0.99, (call, label, d["dscp"])  # browsers default to high
    up, down = directions(data, call="up"), directions(data, call="down")
    assert up["client->gateway"]["delay_source"] == "sender's interface tap"  # the browser has no send log
    assert up["client->gateway"]["listener"] == "model"
    heard = up["gateway->client"]  # the browser listens
    assert heard["listener"] == "chromium" and heard["delay_source"] == "application send time"
    assert heard["model"]["mos_pesq"] >= 3.8 and heard["model"]["concealed_fraction"] is not None
    # on an idle link Chrome plays what the model plays: the capture and its cut add nothing (measured 0.02)
    assert heard["mos_pesq"] == pytest.approx(heard["model"]["mos_pesq"], abs=0.3)
    browser = heard["browser"]
    assert browser["packets_received"] > 300 and browser["mean_jitter_buffer_ms"] > 0
    assert browser["concealed_fraction"] < 0.05
    assert browser["candidate_pair"] == {
        "local_type": "host",
        "remote_type": "host",
        "protocol": "udp",
        "relay_protocol": None,
    }
    assert browser["version"].startswith("Chromium ")
    assert down["client->gateway"]["listener"] == "chromium"  # the answering browser listens to the client
    assert down["gateway->client"]["delay_source"] == "sender's interface tap"
    assert down["gateway->client"]["dscp"]["marked_ef"] >= 0.99  # an answering browser marks too
    workload = json.loads((tmp_path / "out" / "default" / "workload.json").read_text())
    legs = {(c["id"], side): leg for c in workload["calls"] for side, leg in c["sides"].items()}
    assert legs[("up", "caller")]["endpoint"] == "chromium" and legs[("up", "callee")]["endpoint"] == "aiortc"
    assert legs[("up", "caller")]["browser"]["version"].startswith("Chromium ")
    assert legs[("up", "caller")]["network_priority"] == "high"
    host_pair = {"local_type": "host", "remote_type": "host", "protocol": "udp", "relay_protocol": None}
    assert all(leg["candidate_pair"] == host_pair for leg in legs.values()), legs  # aiortc's and the browser's
    audio = tmp_path / "out" / "default" / "audio"
    assert len([p for p in audio.glob("*.wav") if not p.name.startswith("reference-")]) == 4  # what each heard
    for d in (*up.values(), *down.values()):  # each beside the clip it was compared with
        assert (audio.parent / d["audio_file"]).is_file() and (audio.parent / d["reference_file"]).is_file()


CODECS = """name: codecs
calls:
  - {name: pcmu, codec: pcmu, start: 0s, duration: 7s, endpoint: {from: chromium}}
  - {name: pcma, codec: pcma, start: 8s, duration: 7s, endpoint: {from: chromium}}
  - {name: g722, codec: g722, start: 16s, duration: 7s, endpoint: {to: chromium}}
  - {name: both, codec: opus, start: 24s, duration: 7s, endpoint: {from: chromium, to: chromium}}
"""
PAYLOAD_TYPES = {"pcmu": 0, "pcma": 8, "g722": 9}


def test_every_codec_and_browsers_on_both_sides(registry, no_leftovers, tmp_path):
    """G.711 and G.722 from and to a browser (the static payload type on the wire), and a call with a
    browser on each side, scored on each browser's own playout (the model has no payloads there)."""
    scenario = tmp_path / "codecs.yaml"
    scenario.write_text(CODECS)
    data = run_json(scenario, tmp_path / "out")
    # measured: G.711 4.0-4.3; G.722 2.8-3.1 into the browser (aiortc's G.722 encoder, FFmpeg's, is the
    # limit: the model's PESQ of the same packets is 3.2) and 3.8 out of it; browser to browser 4.1-4.3
    floors = {"pcmu": 3.5, "pcma": 3.5, "g722": 2.5, "both": 3.8}
    for name, floor in floors.items():
        for label, d in directions(data, call=name).items():
            assert d["mos_pesq"] is not None and d["mos_pesq"] >= floor, (name, label, d["mos_pesq"], d["pesq_note"])
    both = directions(data, call="both")
    assert all(d["listener"] == "chromium" and d["model"]["mos_pesq"] is None for d in both.values())
    assert all(d["delay_source"] == "sender's interface tap" for d in both.values())
    gateway_tap = load_records(tmp_path / "out" / "default" / "taps" / "gateway-wan")
    workload = json.loads((tmp_path / "out" / "default" / "workload.json").read_text())
    for call in workload["calls"]:
        if call["id"] not in PAYLOAD_TYPES:
            continue
        browser = next(leg for leg in call["sides"].values() if leg["endpoint"] == "chromium")
        sent = gateway_tap.stream(browser["sent_ssrc"])
        assert len(sent) > 200 and set(sent.pt.tolist()) == {PAYLOAD_TYPES[call["id"]]}, call["id"]


def office_with_browser(tmp_path: Path, priority: str) -> Path:
    """The office scenario with the rep's side in Chromium asking for ``priority``; the gateway marks EF."""
    office = yaml.safe_load((REPO / "scenarios" / "office.yaml").read_text())
    call = office["calls"][0]
    call.pop("dscp", None)
    browser, gateway = {"kind": "chromium", "network_priority": priority}, {"kind": "aiortc", "dscp": 46}
    call["endpoint"] = {"from": browser, "to": gateway}
    office["thresholds"] = []
    path = tmp_path / f"office-{priority}.yaml"
    path.write_text(yaml.safe_dump(office))
    return path


def ef_class_packets(variant_dir: Path) -> int:
    """Packets the router's EF class sent out of its WAN interface, from the run's queue samples."""
    workload = json.loads((variant_dir / "workload.json").read_text())
    classes = workload["queue_classes"]["router"]["wan"]
    ef = {handle for handle, name in classes.items() if "ef" in name.lower() or "voice" in name.lower()}
    assert ef, classes
    samples = [q for q in workload["queues"] if q["node"] == "router" and q["interface"] == "wan"]
    return max(q["packets"] for q in samples if q["object"] == "class" and q["handle"] in ef)


def test_office_with_a_browser_client_gives_the_aiortc_verdict(registry, no_leftovers, tmp_path):
    """fifo vs ef-priority with the rep in Chromium (networkPriority high): ef-priority keeps MOS >= 4
    (PESQ >= 3.3: Chrome's own Opus encoding tops out near 4.0-4.1 on an idle link), fifo falls to
    <= 2.5, >= 99% of the browser's RTP is EF on the wire and in the router's EF class."""
    data = run_json(office_with_browser(tmp_path, "high"), tmp_path / "out")
    variants = {v["name"]: i for i, v in enumerate(data["variants"])}
    for name, good in (("ef-priority", True), ("fifo", False)):
        for label, d in directions(data, variants[name]).items():
            assert (d["mos_emodel"] >= 4.0) if good else (d["mos_emodel"] <= 2.5), (name, label, d["mos_emodel"])
            # 3.3, not 3.8: one frame late for the model's buffer costs PESQ about half a point (seen in
            # CI: 3.44 with one late frame, 3.99 without); what a late frame should cost is issue 15's
            # open late-frame study
            assert (d["mos_pesq"] >= 3.3) if good else (d["mos_pesq"] <= 2.5), (name, label, d["mos_pesq"])
    upstream = directions(data, variants["ef-priority"])["client->gateway"]
    assert upstream["dscp"]["marked_ef"] >= 0.99, upstream["dscp"]
    assert ef_class_packets(tmp_path / "out" / "ef-priority") >= 0.99 * upstream["dscp"]["packets"]


def test_a_browser_that_never_asks_is_not_marked(registry, no_leftovers, tmp_path):
    """networkPriority unset: none of the browser's RTP is EF on the wire, and the EF class never sees it."""
    data = run_json(office_with_browser(tmp_path, "unset"), tmp_path / "out", "--variant", "ef-priority")
    upstream = directions(data)["client->gateway"]
    assert upstream["dscp"]["packets"] > 200 and upstream["dscp"]["marked_ef"] == 0.0, upstream["dscp"]
    assert ef_class_packets(tmp_path / "out" / "ef-priority") < 0.01 * upstream["dscp"]["packets"]


# the gateway sends without in-band FEC, so every lost packet is concealed: with FEC, Chrome rebuilt all
# 7 single losses of one CI run from the packets after them and concealed nothing at all
LOSSY = """name: lossy
links: {wan: {router: {loss: 2%}, gateway: {loss: 2%}}}
calls: [{name: rep, from: client, to: gateway, duration: 8s, endpoint: {from: chromium}, opus: {fec: false}}]
"""


def test_random_loss_shows_chrome_and_the_model_side_by_side(registry, no_leftovers, tmp_path):
    scenario = tmp_path / "lossy.yaml"
    scenario.write_text(LOSSY)
    data = run_json(scenario, tmp_path / "out")
    heard = directions(data)["gateway->client"]
    assert heard["network"]["loss"]["fraction"] > 0.003, heard["network"]["loss"]
    assert heard["browser"]["concealed_fraction"] > 0 and heard["model"]["concealed_fraction"] > 0
    assert heard["browser"]["packets_lost"] > 0
    assert heard["ppl_percent"] == pytest.approx(100 * heard["browser"]["concealed_fraction"], abs=0.01)


def test_only_the_call_leaves_the_browser(registry, no_leftovers, tmp_path):
    """An unfiltered capture on the client's interface during a browser call: every IPv4 packet is the
    call's own 5-tuple (no DNS, no update checks, no background networking), nothing else but ARP."""
    scenario = tmp_path / "one.yaml"
    scenario.write_text(ONE_CALL % ("one", "6s"))
    experiment = testbed.load(scenario)
    with experiment.lab("default") as lab:
        client = lab["client"]
        capture = client.popen(
            [client.python, str(REPO / "tests" / "helpers" / "capture_all.py"), "30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert capture.stdout is not None and "ready" in capture.stdout.readline()
        run = lab.workload(tmp_path / "out").run()
        capture.send_signal(signal.SIGTERM)
        out, err = capture.communicate(timeout=30)
    packets = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert packets, err
    workload = json.loads((run.path / "default" / "workload.json").read_text())
    assert workload["calls"][0]["outcome"] == "connected"
    ipv4 = [p for p in packets if p["type"] == "ipv4"]
    others = {p["type"] for p in packets} - {"ipv4", "arp"}
    assert others == set(), f"non-IPv4 frames on the wire: {others}"
    assert ipv4 and all(p["proto"] == 17 for p in ipv4), {p["proto"] for p in ipv4}
    addresses = {p["src"] for p in ipv4} | {p["dst"] for p in ipv4}
    assert len(addresses) == 2, addresses  # the client and the gateway: no resolver, no update server
    flows = {tuple(sorted([(p["src"], p["sport"]), (p["dst"], p["dport"])])) for p in ipv4}
    assert len(flows) <= 2, flows  # the call's candidate pair (and at most one more checked by ICE)


def test_ctrl_c_mid_call_leaves_no_browser(registry, no_leftovers, tmp_path):
    scenario = tmp_path / "long.yaml"
    scenario.write_text(ONE_CALL % ("long", "60s"))
    process = start_testbed("run", str(scenario), "--out", str(tmp_path / "out"))
    wait_for_line(process, "workload:", timeout=60, stream="stderr")
    deadline = time.monotonic() + 30
    while not browser_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert browser_processes(), "the browser never started"
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    rest_of_output(process, timeout=90, stream="stderr")
    assert process.returncode != 0
    assert list(scratch.root().iterdir()) == []


def test_a_browser_that_crashes_mid_call_drops_its_call(registry, no_leftovers, tmp_path):
    """The browser killed mid-call: the call ends as dropped with the reason, the run goes on to score
    what there is, and no process or profile stays."""
    scenario = tmp_path / "crash.yaml"
    scenario.write_text(ONE_CALL % ("crash", "20s"))
    process = start_testbed("run", str(scenario), "--out", str(tmp_path / "out"))
    wait_for_line(process, ": connected", timeout=90, stream="stderr")
    ours = f"--user-data-dir={scratch.root()}/"
    browsers = [
        pid
        for pid in browser_processes()
        if ours in (line := Path(f"/proc/{pid}/cmdline").read_text()) and "--type=" not in line
    ]
    assert len(browsers) == 1, browsers  # the browser itself: its renderers and helpers have a --type
    os.kill(browsers[0], signal.SIGKILL)
    rest_of_output(process, timeout=120, stream="stderr")
    call = json.loads((tmp_path / "out" / "result.json").read_text())["variants"][0]["calls"][0]
    assert call["outcome"] == "dropped" and "the browser closed" in call["reason"], call
    assert list(scratch.root().iterdir()) == []


def test_a_browser_that_cannot_start_fails_its_call(registry, no_leftovers, tmp_path, monkeypatch):
    """No browser at the configured path: the call ends as an error that says so, in seconds, no hang."""
    monkeypatch.setenv("TESTBED_CHROMIUM", "/nonexistent/chromium")
    scenario = tmp_path / "broken.yaml"
    scenario.write_text(ONE_CALL % ("broken", "5s"))
    started = time.monotonic()
    data = run_json(scenario, tmp_path / "out", timeout=120)
    assert time.monotonic() - started < 60
    call = data["variants"][0]["calls"][0]
    assert call["outcome"] == "error" and "no browser at /nonexistent/chromium" in call["reason"], call


def test_dscp_for_a_browser_side_is_refused(registry, tmp_path):
    scenario = tmp_path / "marked.yaml"
    scenario.write_text("name: marked\ncalls: [{from: client, to: gateway, dscp: EF, endpoint: {from: chromium}}]\n")
    result = run_testbed("validate", str(scenario))
    assert result.returncode == 2
    assert "network_priority" in result.stderr + result.stdout and "chromium" in result.stderr + result.stdout


def test_a_group_of_browser_callers_talks_out_of_step(registry, no_leftovers, tmp_path):
    """Each browser of a ``count: N`` group starts its microphone at its own point in the clip, as aiortc
    senders do; PESQ's alignment finds it (scores stay high)."""
    scenario = tmp_path / "group.yaml"
    scenario.write_text("name: group\ncalls: [{name: rep, count: 2, talk: 6s, endpoint: {from: chromium}}]\n")
    data = run_json(scenario, tmp_path / "out")
    workload = json.loads((tmp_path / "out" / "default" / "workload.json").read_text())
    starts = [call["sides"]["caller"]["clip_offset_frames"] for call in workload["calls"]]
    assert starts[0] != starts[1], starts
    for call in ("rep-1", "rep-2"):
        d = directions(data, call=call)["client->gateway"]
        assert d["mos_pesq"] is not None and d["mos_pesq"] >= 3.5, (call, d["mos_pesq"], d["pesq_note"])
