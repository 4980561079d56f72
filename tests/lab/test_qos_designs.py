"""Router designs as engineers deploy them, with real traffic behind a flooded 10 Mbit bottleneck: voice
by the vendor's media prefix and ports (unmarked media rides in voice, a flood from ephemeral ports to
another prefix stays in bulk), and a policed priority class (above its rate dropped, below it fast)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import numpy as np

from testbed.lab import Lab, iptables
from testbed.lab.measure import probe_stream
from testbed.scenario.addressing import plan_addresses
from testbed.scenario.model import Scenario
from testbed.scenario.router_template import RouterTemplate
from tests.helpers import REPO
from tests.helpers.qos import class_packets, shipped

FLOOD = [sys.executable, "-m", "tests.helpers.udp_flood"]


def bottleneck(**extra) -> Scenario:
    """client --lan-- router --wan-- gateway, the router's upstream shaped to 10 Mbit."""
    return Scenario.model_validate({"name": "designs", "links": {"wan": {"router": {"rate": "10mbit"}}}, **extra})


def flood(lab: Lab, address: str, rate_bps: float, seconds: float, port: int, source_port: int = 0, dscp: int = 0):
    argv = [*FLOOD, "send", address, str(rate_bps), str(seconds), str(port), str(source_port), str(dscp)]
    return lab.node("client").popen(argv, cwd=REPO)


def test_unmarked_media_to_the_media_prefix_rides_in_voice(registry, no_leftovers, tmp_path):
    """DSCP 0 media to the media prefix is voice (0 loss, p95 < 5 ms under a flood at 2.5x the link);
    a flood from a port inside 10000-60000 to a port inside it, but to another prefix, stays in bulk."""
    gateway = plan_addresses(bottleneck().topology).address("gateway")
    media = ipaddress.IPv4Network(f"{gateway}/32")
    elsewhere = str(gateway + 1)  # another address of the gateway's, outside the media prefix
    scenario = bottleneck(edge={"media_prefix": str(media)})
    with Lab(scenario, registry=registry, router_template=shipped("media-prefix")) as lab:
        lab.node("gateway").run(["ip", "addr", "add", f"{elsewhere}/32", "dev", "wan"])
        flooding = flood(lab, elsewhere, 25e6, 13, port=30000, source_port=20001)
        try:
            stream = probe_stream(
                lab.node("client"), lab.node("gateway"), str(gateway), tmp_path, pps=50, count=500, dscp=0, port=20000
            )
        finally:
            flooding.wait(timeout=60)
        counts = class_packets(lab)
    p95 = np.percentile(stream.delays_ms, 95)
    print(f"unmarked media to the media prefix: loss {stream.loss_rate:.1%}, p95 {p95:.2f} ms; classes {counts}")
    assert stream.loss_rate == 0, f"{stream.loss_rate:.1%} of the unmarked media lost"
    assert p95 < 5, f"unmarked media p95 one-way delay {p95:.2f} ms"
    assert 500 <= counts["voice"] < 600, counts  # the probe (and its warm-up), not the flood
    assert counts["bulk"] > 10 * counts["voice"], counts


def receive(lab: Lab, port: int) -> subprocess.Popen:
    argv = [*FLOOD, "receive", str(lab.plan.address("gateway")), str(port)]
    receiving = lab.node("gateway").popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert receiving.stdout is not None and receiving.stdout.readline().strip() == "ready"
    return receiving


def test_a_policed_priority_class_drops_its_excess_and_keeps_its_own_fast(registry, no_leftovers, tmp_path):
    """llq-policed: voice is policed to 30% of 10 Mbit. EF below that under a bulk flood: no loss,
    p95 < 5 ms. EF at 5 Mbit beside a 10 Mbit bulk flood: EF is cut to about its rate (hashlimit's
    one-second burst on top over 6 s) and bulk keeps the rest of the link."""
    with Lab(bottleneck(), registry=registry, router_template=shipped("llq-policed")) as lab:
        gateway = str(lab.plan.address("gateway"))
        flooding = flood(lab, gateway, 25e6, 13, port=5001)
        try:
            stream = probe_stream(
                lab.node("client"), lab.node("gateway"), gateway, tmp_path, pps=50, count=500, dscp=46, port=20000
            )
        finally:
            flooding.wait(timeout=60)
        ef_in, bulk_in = receive(lab, 6000), receive(lab, 6001)
        floods = [flood(lab, gateway, 5e6, 6, port=6000, dscp=46), flood(lab, gateway, 10e6, 6, port=6001)]
        for sender in floods:
            sender.wait(timeout=60)
        ef_bps, bulk_bps = (float(r.communicate(timeout=30)[0].strip()) for r in (ef_in, bulk_in))
        policed = lab.node("router").run([iptables.IPTABLES, "-t", "mangle", "-L", "vtb-qos", "-v", "-n", "-x"])
        tc_filters = lab.node("router").run(["tc", "-s", "filter", "show", "dev", "wan"]).stdout
    p95 = np.percentile(stream.delays_ms, 95)
    print(
        f"llq-policed: EF below its rate loss {stream.loss_rate:.1%}, p95 {p95:.2f} ms; EF sent at 5 Mbit "
        f"arrived at {ef_bps / 1e6:.2f} Mbit, bulk {bulk_bps / 1e6:.2f} Mbit"
    )
    assert stream.loss_rate == 0, f"{stream.loss_rate:.1%} of EF below its rate lost"
    assert p95 < 5, f"EF below its rate: p95 one-way delay {p95:.2f} ms"
    assert 2.5e6 < ef_bps < 4.2e6, f"EF sent at 5 Mbit arrived at {ef_bps / 1e6:.2f} Mbit"
    assert bulk_bps > 5.5e6, f"bulk kept only {bulk_bps / 1e6:.2f} Mbit"
    drops = [int(line.split()[0]) for line in policed.stdout.splitlines() if "DROP" in line]
    if "police" in tc_filters:  # a kernel with act_police: tc's policer did it
        assert not drops and "overlimits" in tc_filters, tc_filters
    else:  # this CI's kernel: iptables' hashlimit
        assert drops and drops[0] > 100, policed.stdout


def test_a_smart_queue_the_kernel_lacks_stops_the_run_with_exit_3(registry, no_leftovers, tmp_path):
    """sqm-cake on a kernel without sch_cake (this CI's): exit 3 naming the qdisc and the remedy, nothing
    left behind. Where the kernel has cake, the same run goes through."""
    from testbed.lab.probe import has, probe
    from tests.helpers.lab import run_testbed

    scenario = tmp_path / "cake.yaml"
    scenario.write_text(
        "name: cake\nlinks: {wan: {router: {rate: 2mbit}}}\nrouter: {template: sqm-cake}\n"
        "calls: [{name: rep, talk: 2s}]\n"
    )
    result = run_testbed("run", str(scenario), "--out", str(tmp_path / "out"), timeout=180)
    if has(probe(registry), "cake"):
        assert result.returncode in (0, 1), result.stderr
        return
    assert result.returncode == 3, (result.returncode, result.stderr)
    assert "sch_cake" in result.stderr and "testbed doctor" in result.stderr, result.stderr


def test_lan_sources_behind_nat_are_classified_before_the_translation(registry, no_leftovers, tmp_path):
    """A WAN class that matches the client's LAN address still gets its packets when the router
    masquerades them (their source on the WAN is the router's address): iptables classifies them before
    the translation. The same class on the LAN side of an un-NATed router is u32's, for contrast."""
    client = plan_addresses(bottleneck().topology).address("client")
    policy = {
        "classes": [
            {"name": "control", "match": [{"dscp": ["CS6"]}], "priority": 0, "rate": "5%"},
            {"name": "voice", "match": [{"from": f"{client}/32", "protocol": "udp"}], "priority": 1, "rate": "40%"},
            {"name": "bulk", "rate": "55%", "default": True},
        ]
    }
    template = RouterTemplate.model_validate({"nat": "masquerade", "wan": policy})
    with Lab(bottleneck(), registry=registry, router_template=template) as lab:
        gateway = str(lab.plan.address("gateway"))
        before = class_packets(lab)
        stream = probe_stream(lab.node("client"), lab.node("gateway"), gateway, tmp_path, pps=500, count=200, dscp=0)
        after = class_packets(lab)
        rules = lab.node("router").run([iptables.IPTABLES, "-t", "mangle", "-S", "vtb-qos"]).stdout
    print(f"behind NAT: {after['voice'] - before['voice']} of 200 in voice; rules: {rules.strip()}")
    assert stream.loss_rate == 0
    assert 200 <= after["voice"] - before["voice"] <= 210, (before, after)  # the probe and its warm-up
    assert f"-s {client}/32" in rules and "CLASSIFY" in rules
