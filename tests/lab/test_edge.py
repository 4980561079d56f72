"""The router's edge for real: a client behind NAT (masquerade and symmetric) calls a public gateway,
the gateway sees only the router's WAN address and learns the client as a peer-reflexive candidate, and
nothing the LAN did not ask for comes in from the WAN."""

from __future__ import annotations

import ipaddress
import json

import testbed
from testbed.lab.reach import udp_probe
from testbed.media.tap.records import load_records
from tests.helpers import REPO
from tests.helpers.lab import run_testbed

NAT_CALLS = """name: nat
calls: [{name: rep, from: client, to: gateway, duration: 5s}]
variants:
  masquerade: {router: {template: nat}}
  symmetric: {router: {template: nat-symmetric}}
"""


def test_a_natted_client_calls_a_public_gateway(registry, no_leftovers, tmp_path):
    scenario = tmp_path / "nat.yaml"
    scenario.write_text(NAT_CALLS)
    result = run_testbed("run", str(scenario), "--out", str(tmp_path / "out"), "--json", timeout=180)
    assert result.stdout, result.stderr
    for variant in json.loads(result.stdout)["variants"]:
        for label, direction in variant["calls"][0]["directions"].items():
            assert direction["mos_pesq"] >= 4.0, (variant["name"], label)
        out = tmp_path / "out" / variant["name"]
        lab = json.loads((out / "lab.json").read_text())["nodes"]
        call = json.loads((out / "workload.json").read_text())["calls"][0]
        assert call["outcome"] == "connected"
        client, gateway = call["sides"]["caller"], call["sides"]["callee"]
        assert client["candidate_pair"]["local_type"] == "host"
        assert gateway["candidate_pair"]["remote_type"] == "prflx", gateway["candidate_pair"]  # learnt from checks
        outside = ipaddress.ip_interface(lab["router"]["interfaces"]["wan"]).ip
        seen = load_records(out / "taps" / "gateway-wan").stream(client["sent_ssrc"])
        assert len(seen) > 200 and {str(ipaddress.ip_address(int(a))) for a in set(seen.src.tolist())} == {str(outside)}


def test_nothing_unsolicited_comes_in_under_nat(registry, no_leftovers, tmp_path):
    scenario = tmp_path / "nat.yaml"
    scenario.write_text(NAT_CALLS.replace("calls: [{name: rep, from: client, to: gateway, duration: 5s}]\n", ""))
    experiment = testbed.load(scenario)
    for variant in ("masquerade", "symmetric"):
        with experiment.lab(variant) as session:
            client, gateway = session["client"], session["gateway"]
            client_address = str(session.lab.plan.address("client"))
            gateway_address = str(session.lab.plan.address("gateway"))
            assert udp_probe(client.netns_path, gateway.netns_path, gateway_address, timeout=1).received
            assert not udp_probe(gateway.netns_path, client.netns_path, client_address, timeout=1).received, variant
            session.set_router_template("fifo")  # no NAT: the lab routes the LAN, and the chains are empty
            assert udp_probe(gateway.netns_path, client.netns_path, client_address, timeout=1).received


FIREWALLED = """name: firewalled
calls: [{name: rep, from: client, to: gateway, duration: 4s, setup_timeout: 3s}]
variants:
  vendor: {router: {template: firewall-vendor-rules}}
  udp-blocked: {router: {template: firewall-udp-blocked}}
  office-edge: {router: {template: office-edge}}
"""


def test_the_vendor_rules_let_media_through_and_nothing_else(registry, no_leftovers, tmp_path):
    """UDP into 10000-60000 passes, UDP elsewhere does not, nothing comes in unasked; and the call
    connects on the vendors' rules (with NAT too) but not where only TCP 80/443 may leave."""
    scenario = tmp_path / "firewalled.yaml"
    scenario.write_text(FIREWALLED)
    experiment = testbed.load(scenario)
    with experiment.lab("vendor") as session:
        client, gateway = session["client"], session["gateway"]
        to_gateway = str(session.lab.plan.address("gateway"))
        for port, allowed in ((20000, True), (3478, True), (5000, False), (61000, False)):
            probe = udp_probe(client.netns_path, gateway.netns_path, to_gateway, timeout=1, port=port)
            assert probe.received is allowed, port
        to_client = str(session.lab.plan.address("client"))
        assert not udp_probe(gateway.netns_path, client.netns_path, to_client, timeout=1, port=20000).received
    result = run_testbed("run", str(scenario), "--out", str(tmp_path / "out"), "--json", timeout=240)
    assert result.stdout, result.stderr
    outcomes = {v["name"]: v["calls"][0]["outcome"] for v in json.loads(result.stdout)["variants"]}
    assert outcomes == {"vendor": "connected", "udp-blocked": "failed", "office-edge": "connected"}


def test_conntrack_udp_timeouts_are_the_routers_own(registry, no_leftovers, tmp_path):
    (tmp_path / "routers").mkdir()
    (tmp_path / "routers" / "short.yaml").write_text(
        "firewall: {default: accept, udp_timeout: 17, udp_stream_timeout: 45}\n"
    )
    scenario = tmp_path / "short.yaml"
    scenario.write_text("name: short\nrouter: {template: short}\n")
    with testbed.load(scenario).lab("default") as session:
        values = (
            session["router"]
            .run(
                [
                    "sysctl",
                    "-n",
                    "net.netfilter.nf_conntrack_udp_timeout",
                    "net.netfilter.nf_conntrack_udp_timeout_stream",
                ]
            )
            .stdout.split()
        )
        assert values == ["17", "45"]
        host = session["client"].run(["sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout"]).stdout.strip()
        assert host != "17"  # a namespace's own: other nodes keep theirs


EDGE = """name: edge
variants:
  vendor: {router: {template: firewall-vendor-rules}}
  strict: {router: {template: firewall-udp-blocked}}
"""


def test_edge_check_grades_the_vendors_flows(registry, no_leftovers, tmp_path):
    scenario = tmp_path / "edge.yaml"
    scenario.write_text(EDGE)
    vendor = run_testbed("lab", "edge", str(scenario), "--variant", "vendor", "--json", timeout=120)
    assert vendor.returncode == 0, vendor.stderr
    flows = {f["flow"]: f for f in json.loads(vendor.stdout)["flows"]}
    assert set(flows) == {"media", "https", "stun-turn-tcp", "stun-turn-udp"}
    assert all(f["allowed"] and f["grade"] == "good" and f["connect_ms"] < 2000 for f in flows.values()), flows
    strict = run_testbed("lab", "edge", str(scenario), "--variant", "strict", "--json", timeout=120)
    assert strict.returncode == 1 and "required flows blocked: media" in strict.stderr
    flows = {f["flow"]: f for f in json.loads(strict.stdout)["flows"]}
    assert flows["https"]["allowed"] and not flows["media"]["allowed"] and flows["media"]["grade"] == "blocked"
    assert "no answer on port 10000" in flows["media"]["detail"]


def test_a_nat_that_forgets_its_mappings_mid_call(registry, no_leftovers, tmp_path):
    """scenarios/nat-flush.yaml: under symmetric NAT the gateway's audio stops reaching the client and
    scores as lost to the end of the call, not as a shorter call; the client's audio still arrives.
    (Masquerade recovers or is cut depending on which packet reaches the router first: see the file.)"""
    result = run_testbed(
        "run", str(REPO / "scenarios" / "nat-flush.yaml"), "--out", str(tmp_path / "out"), "--json", timeout=240
    )
    assert result.stdout, result.stderr
    directions = {v["name"]: v["calls"][0]["directions"] for v in json.loads(result.stdout)["variants"]}
    cut = directions["symmetric"]["gateway->client"]
    assert cut["network"]["loss"]["fraction"] > 0.4 and cut["playout"]["effective_loss"] > 0.4
    assert cut["mos_emodel"] < 2.0 and cut["mos_pesq"] < 2.0
    for variant in ("symmetric", "masquerade"):
        assert directions[variant]["client->gateway"]["mos_emodel"] >= 4.0, variant
    timeline = json.loads((tmp_path / "out" / "symmetric" / "workload.json").read_text())["timeline"]
    assert "flush_conntrack at 5s" in [entry["what"] for entry in timeline]
