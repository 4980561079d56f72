"""The vendor's cloud side for real: coturn in a cloud-edge node, calls relayed through it when the office
firewall blocks UDP (aiortc callers with one TURN transport, the browser with all three and its own
fallback), the TURN allocations of `testbed lab edge`, and coturn gone after success, failure and Ctrl-C.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import time

import pytest

import testbed
from testbed.errors import LabError
from testbed.lab import netns
from testbed.lab.turn import allocate
from testbed.media.tap.records import load_records
from tests.helpers import REPO, require
from tests.helpers.lab import rest_of_output, run_testbed, start_testbed, turn_processes, wait_for_line

FIREWALL = REPO / "scenarios" / "firewall.yaml"


@pytest.fixture(autouse=True)
def coturn():
    require("coturn", shutil.which("turnserver") is not None, "TURN tests start coturn (apt install coturn)")


def short_firewall(tmp_path, seconds: str = "5s", loss: bool = True):
    """The shipped firewall scenario with a shorter call (and without its WAN loss when ``loss`` is off)."""
    text = FIREWALL.read_text().replace("duration: 10s", f"duration: {seconds}")
    if not loss:
        text = text.replace(", loss: 1%", "")
    path = tmp_path / "firewall.yaml"
    path.write_text(text)
    return path


def test_udp_blocked_relays_over_tls_443_and_both_paths_are_scored(registry, no_leftovers, tmp_path):
    """With 1% WAN loss: a call over the vendors' rules goes direct over UDP; the aiortc caller offered
    TURN over TLS connects through the TURN server on 443 when only TCP 80/443 may leave. Both are
    scored with E-model and PESQ; the relayed path loses nothing on the wire (TCP retransmits). The
    direct call is offered no TURN: aiortc nominates aggressively (the first pair whose check succeeds
    wins), so under loss a lost check can send an offered call through TURN although UDP is open."""
    scenario = short_firewall(tmp_path)
    direct = tmp_path / "direct.yaml"
    direct.write_text(scenario.read_text().replace(", ice: {turn: tls}", ""))
    runs = {}
    for path, variant in ((direct, "vendor"), (scenario, "udp-blocked")):
        out = tmp_path / variant
        result = run_testbed("run", str(path), "--variant", variant, "--out", str(out), "--json", timeout=240)
        assert result.stdout, result.stderr
        call = json.loads(result.stdout)["variants"][0]["calls"][0]
        assert call["outcome"] == "connected", (variant, call["reason"])
        for label, direction in call["directions"].items():
            assert direction["mos_emodel"] is not None and direction["mos_pesq"] is not None, (variant, label)
            # scored, whatever it came to: a 5 s call over TLS at 100 ms RTT with 1% loss has scored
            # anywhere from 1.5 to 4 depending on where the stalls fell
            assert direction["mos_pesq"] >= 1.0 and direction["pesq_note"] == "", (variant, label, direction)
        runs[variant] = (call, out / variant)
    (direct_call, _), (relayed_call, out) = runs["vendor"], runs["udp-blocked"]
    assert direct_call["path"] is None  # no ICE servers, no relay: nothing to report beyond the pair
    workload = json.loads((tmp_path / "vendor" / "vendor" / "workload.json").read_text())
    assert workload["calls"][0]["sides"]["caller"]["candidate_pair"]["local_type"] == "host"
    relayed = relayed_call["path"]
    assert relayed["caller_pair"]["local_type"] == "relay" and relayed["relay_protocol"] == "tls"
    assert relayed["turn_required"] is True
    # the relay carried the call (TCP coalesces: fewer segments than the 250 packets sent)
    assert relayed["timings"]["gather_s"] > 0 and relayed["relay_tcp"]["segs_out"] > 20
    workload = json.loads((out / "workload.json").read_text())
    assert workload["calls"][0]["setup_s"] > 0
    assert workload["calls"][0]["sides"]["callee"]["candidate_pair"]["remote_type"] == "relay"
    # inside TLS the client's own tap sees no RTP, so its arrivals are the listener's application's
    lab = json.loads((out / "lab.json").read_text())
    assert lab["turn"]["urls"]["tls"].startswith(f"turns:{lab['turn']['address']}:443")
    heard = relayed_call["directions"]["gateway->client"]
    assert heard["network"]["loss"]["lost"] == 0 and "application" in heard["delay_source"]
    assert (out / "turnserver.log").read_text().count("ALLOCATE processed, success") >= 2


def test_the_browser_falls_back_to_turn_over_tls_by_itself(registry, no_leftovers, tmp_path):
    """Chromium caller (the browser endpoint) offered TURN over UDP, TCP and TLS, policy all: with UDP
    blocked it gathers what it can and connects through TLS on 443 without being told which."""
    require("chromium", shutil.which("chromium") is not None, "the browser endpoint runs /usr/bin/chromium")
    text = short_firewall(tmp_path, loss=False).read_text()
    text = text.replace("ice: {turn: tls}", "endpoint: {from: chromium}, ice: {turn: [udp, tcp, tls]}")
    scenario = tmp_path / "browser.yaml"
    scenario.write_text(text)
    result = run_testbed(
        "run", str(scenario), "--variant", "open", "--variant", "udp-blocked", "--out", str(tmp_path / "o"), "--json",
        timeout=240,
    )  # fmt: skip
    assert result.stdout, result.stderr
    variants = {v["name"]: v["calls"][0] for v in json.loads(result.stdout)["variants"]}
    assert variants["open"]["outcome"] == "connected" and variants["open"]["path"]["relay_protocol"] is None
    blocked = variants["udp-blocked"]
    assert blocked["outcome"] == "connected", blocked["reason"]
    assert blocked["path"]["relay_protocol"] == "tls" and blocked["path"]["turn_required"] is True
    assert blocked["directions"]["client->gateway"]["mos_pesq"] > 3.0  # the browser's audio, relayed


def test_edge_check_allocates_turn_over_udp_tcp_and_tls(registry, no_leftovers, tmp_path):
    scenario = short_firewall(tmp_path, loss=False)
    verdicts = {}
    for variant, code in (("vendor", 0), ("udp-blocked", 1)):
        result = run_testbed("lab", "edge", str(scenario), "--variant", variant, "--json", timeout=120)
        assert result.returncode == code, (variant, result.stderr)
        report = json.loads(result.stdout)
        verdicts[variant] = ({f["flow"]: f["allowed"] for f in report["flows"]}, report["media_path"])
    allowed, path = verdicts["vendor"]
    assert all(allowed[f"turn-{t}"] for t in ("udp", "tcp", "tls")) and path.startswith("direct")
    allowed, path = verdicts["udp-blocked"]
    assert not allowed["turn-udp"] and not allowed["turn-tcp"] and allowed["turn-tls"]
    assert path.startswith("TURN required") and "TLS" in path


def test_the_turn_server_lives_with_its_lab(registry, no_leftovers, tmp_path):
    """coturn runs in its node only while the lab is up; a dead coturn is a clear lab error; its
    certificates and keys go with the lab."""
    experiment = testbed.load(short_firewall(tmp_path, loss=False))
    with experiment.lab("open") as session:
        turn = session.lab.turn
        assert turn is not None and turn.process is not None
        pid = turn.process.pid
        assert pid in netns.pids_in(session["turn"].netns_path)
        files = registry.files_dir(session.lab.run_id)
        assert {p.name for p in files.iterdir()} >= {"ca.pem", "turn.pem", "turn.key"}
        assert allocate(session["client"].netns_path, turn.endpoint, "tls").allocated
        os.kill(pid, signal.SIGKILL)
        turn.process.wait(5)
        with pytest.raises(LabError, match="coturn"):
            session.lab.check_engines()
    assert not files.exists()


@pytest.mark.parametrize("how", ["coturn killed", "ctrl-c"])
def test_nothing_stays_after_a_failed_or_interrupted_run(registry, no_leftovers, tmp_path, how):
    scenario = short_firewall(tmp_path, seconds="30s", loss=False)
    before = set(turn_processes(registry.root))
    process = start_testbed("run", str(scenario), "--variant", "udp-blocked", "--out", str(tmp_path / "out"))
    wait_for_line(process, ": connected", timeout=90, stream="stderr")
    if how == "ctrl-c":
        process.send_signal(signal.SIGINT)
    else:
        (pid,) = set(turn_processes(registry.root)) - before
        os.kill(pid, signal.SIGKILL)
    errors = rest_of_output(process, timeout=90, stream="stderr")
    assert process.returncode != 0
    if how == "coturn killed":  # a fault: the calls' recorded media is kept, scoring reads it (test_faults)
        assert process.returncode == 4 and "coturn" in errors and "partial results in" in errors, errors
        workload = json.loads((tmp_path / "out" / "udp-blocked" / "workload.json").read_text())
        assert "coturn" in workload["fault"] and (tmp_path / "out" / "run.json").exists()
    deadline = time.monotonic() + 5
    while set(turn_processes(registry.root)) - before and time.monotonic() < deadline:
        time.sleep(0.1)


def test_signalling_crosses_the_office_edge(registry, no_leftovers, tmp_path):
    """Offers and answers over WSS on 443 through the router: with the vendors' rules the call connects and
    each side's signalling time is reported; a firewall that lets only UDP media out fails the setup,
    as it would a dialer's."""
    # no TURN for this caller: its TLS allocation would be blocked too, and aiortc waits for it to gather
    text = short_firewall(tmp_path, seconds="4s", loss=False).read_text().replace(", ice: {turn: tls}", "")
    text += """  no-https:
    description: UDP media allowed, TCP 443 not
    router:
      node: router
      template: firewall-vendor-rules
      overrides: {firewall: {default: drop, rules: [{protocol: udp, ports: [10000-60000]}]}}
"""
    scenario = tmp_path / "signalling.yaml"
    scenario.write_text(
        text.replace("setup_timeout: 3s", "").replace("duration: 4s", "duration: 4s, setup_timeout: 4s")
    )
    out = tmp_path / "out"
    run_testbed("run", str(scenario), "--variant", "vendor", "--variant", "no-https", "--out", str(out), timeout=180)
    vendor = json.loads((out / "vendor" / "workload.json").read_text())["calls"][0]
    assert vendor["outcome"] == "connected", vendor["reason"]
    assert vendor["sides"]["caller"]["timings"]["signalling_s"] > 0
    assert json.loads((out / "vendor" / "lab.json").read_text())["signalling"]["url"].endswith(":443/")
    blocked = json.loads((out / "no-https" / "workload.json").read_text())["calls"][0]
    assert blocked["outcome"] in ("error", "failed") and "signalling" in blocked["reason"], blocked


UDP_RELAY = """name: udp-relay
topology:
  nodes: {client: {}, router: {kind: router}, gateway: {}, turn: {}}
  links:
    lan: {endpoints: [client, router]}
    wan: {endpoints: [router, gateway, turn], subnet: 203.0.113.0/24}
edge: {media_prefix: 203.0.113.0/24, turn: {node: turn}}
router: {template: nat}
calls:
  - {name: rep, duration: 5s, ice: {turn: udp, policy: relay}}
"""


def test_the_taps_see_rtp_inside_turn_channeldata(registry, no_leftovers, tmp_path):
    """Relay-only over UDP (aiortc caller): the client's packets leave inside ChannelData to the TURN
    server; its tap still counts them (and their DSCP) and the gateway's arrive from the relay."""
    scenario = tmp_path / "relay.yaml"
    scenario.write_text(UDP_RELAY)
    out = tmp_path / "out"
    result = run_testbed("run", str(scenario), "--out", str(out), "--json", timeout=120)
    assert result.stdout, result.stderr
    call = json.loads(result.stdout)["variants"][0]["calls"][0]
    assert call["path"]["relay_protocol"] == "udp" and call["path"]["turn_required"] is None  # policy relay
    sent = call["directions"]["client->gateway"]
    assert sent["dscp"]["packets"] > 200 and sent["dscp"]["marked_ef"] == 1.0  # seen inside ChannelData
    heard = call["directions"]["gateway->client"]
    assert heard["network"]["loss"]["received"] > 200 and "application (media" not in heard["delay_source"]
    lab = json.loads((out / "default" / "lab.json").read_text())
    caller = json.loads((out / "default" / "workload.json").read_text())["calls"][0]["sides"]["caller"]
    seen = load_records(out / "default" / "taps" / "gateway-wan").stream(caller["sent_ssrc"])
    sources = {str(ipaddress.ip_address(int(a))) for a in set(seen.src.tolist())}
    assert len(seen) > 200 and sources == {lab["turn"]["address"]}


def test_sigkill_then_cleanup_removes_coturn_and_the_certificates(registry, no_leftovers, tmp_path):
    """A harness killed outright leaves coturn running in its namespace and the run's CA and keys on
    disk; `testbed cleanup` removes both (they are in the run's registry record)."""
    before = set(turn_processes(registry.root))
    process = start_testbed("lab", "up", str(short_firewall(tmp_path, loss=False)), "--foreground")
    run_id = re.search(r"lab (\w+) is up", wait_for_line(process, "is up", timeout=60))[1]
    process.kill()
    process.wait()
    assert set(turn_processes(registry.root)) - before, "coturn should outlive a SIGKILLed harness"
    assert (registry.files_dir(run_id) / "ca.pem").exists()
    result = run_testbed("cleanup")
    assert result.returncode == 0 and f"run {run_id}: removed" in result.stdout, result.stdout + result.stderr
    assert not registry.files_dir(run_id).exists()
