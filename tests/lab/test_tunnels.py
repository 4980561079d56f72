"""VPN tunnels with real kernel devices and real packets: the tunnel carries the traffic, the router's
EF class sees it only when the tunnel copies DSCP to the outer header, and the shipped vpn scenario
builds in each of its variants. GRE needs the kernel's ip_gre (missing on some cloud kernels)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import numpy as np
import pytest

from testbed.errors import CapabilityError
from testbed.lab import Lab
from testbed.lab.measure import probe_stream
from testbed.lab.reach import udp_probe
from testbed.scenario import load_scenario
from testbed.scenario.model import Scenario
from tests.helpers import REPO
from tests.helpers.lab import lab_namespaces
from tests.helpers.qos import class_packets, shipped

VPN = REPO / "scenarios" / "vpn.yaml"


@pytest.fixture(scope="module", autouse=True)
def tunnel_modules():
    """Load the tunnel modules before any test's leak check starts: loading ip_gre makes the kernel add its
    fallback devices (gre0, gretap0, erspan0) to every namespace, the root one included, for good."""
    for module in ("ip_gre", "vxlan"):
        subprocess.run(["modprobe", "-q", module], capture_output=True)  # built in, or missing: the lab says so


def vpn_lab(kind: str, copy_dscp: bool, routes: tuple[str, ...] = ("gateway",)) -> Scenario:
    """client, viewer --lan-- router --wan-- gateway, concentrator; a tunnel client <-> concentrator."""
    return Scenario.model_validate(
        {
            "name": "tunnel",
            "topology": {
                "nodes": {"client": {}, "viewer": {}, "router": {"kind": "router"}, "gateway": {}, "concentrator": {}},
                "links": {
                    "lan": {"endpoints": ["client", "viewer", "router"]},
                    "wan": {"endpoints": ["router", "gateway", "concentrator"]},
                },
                "tunnels": {
                    "vpn": {
                        "kind": kind,
                        "endpoints": ["client", "concentrator"],
                        "copy_dscp": copy_dscp,
                        "routes": list(routes),
                    }
                },
            },
            "links": {"wan": {"router": {"rate": "10mbit"}}},
        }
    )


@contextmanager
def tunnel_lab(kind: str, copy_dscp: bool, registry, **options) -> Iterator[Lab]:
    """``with`` the lab. A kernel without the tunnel module skips with the lab's own message, also in CI:
    the CI machine's kernel is what it is (this one has VXLAN but no ip_gre), unlike the VM or Docker."""
    lab = Lab(vpn_lab(kind, copy_dscp, **options), registry=registry, router_template=shipped("ef-priority"))
    try:
        lab.__enter__()  # a failed set-up has already removed what it built
    except CapabilityError as exc:
        pytest.skip(f"{kind} tunnels: {exc}")
    with ExitStack() as stack:
        stack.push(lab)  # its __exit__ runs as a with statement's would
        yield lab


def tx_packets(lab: Lab, node: str, ifname: str) -> int:
    ipr = lab.netlink(lab.node(node).netns_path)
    (link,) = ipr.get_links(ipr.link_lookup(ifname=ifname)[0])
    return link.get_attr("IFLA_STATS64")["tx_packets"]


def ef_probe(lab: Lab, tmp_path, count: int = 200, pps: float = 500):
    return probe_stream(
        lab.node("client"),
        lab.node("gateway"),
        str(lab.plan.address("gateway")),
        tmp_path,
        pps=pps,
        count=count,
        size=200,
        dscp=46,
        port=20000,
    )


@pytest.mark.parametrize("kind", ["vxlan", "gre"])
@pytest.mark.parametrize("copy_dscp", [False, True], ids=["plain", "dscp-copied"])
def test_router_sees_ef_only_when_the_tunnel_copies_it(registry, no_leftovers, tmp_path, kind, copy_dscp):
    with tunnel_lab(kind, copy_dscp, registry) as lab:
        before, tunnel_before = class_packets(lab), tx_packets(lab, "client", "vpn")
        stream = ef_probe(lab, tmp_path)
        after, tunnel_after = class_packets(lab), tx_packets(lab, "client", "vpn")
        run_id = lab.run_id
    assert stream.loss_rate == 0
    assert set(stream.dscp.tolist()) == {46}, "the inner packet keeps its DSCP either way"
    assert tunnel_after - tunnel_before >= 200, "the stream went into the tunnel"
    voice, bulk = after["voice"] - before["voice"], after["bulk"] - before["bulk"]
    if copy_dscp:
        assert voice >= 200, after
    else:
        assert voice == 0 and bulk >= 200, after
    assert lab_namespaces(run_id) == set()


def test_tunnel_routes_only_its_targets_and_answers_come_back(registry, no_leftovers, tmp_path):
    with tunnel_lab("vxlan", False, registry) as lab:
        client, gateway = lab.node("client"), lab.node("gateway")
        concentrator = lab.node("concentrator")
        into_tunnel = client.run(["ip", "route", "get", str(lab.plan.address("gateway"))]).stdout
        to_concentrator = client.run(["ip", "route", "get", str(lab.plan.address("concentrator"))]).stdout
        back = gateway.run(["ip", "route", "get", "198.18.2.1"]).stdout
        forward = concentrator.run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip()
        tos = client.run(["ip", "-d", "link", "show", "vpn"]).stdout
        # from the tunnel address: there and back through the tunnel; the concentrator is the one hop
        result = udp_probe(client.netns_path, gateway.netns_path, str(lab.plan.address("gateway")), source="198.18.2.1")
        described = lab.describe()
    assert "dev vpn" in into_tunnel, into_tunnel
    assert "dev lan" in to_concentrator, "the outer packets themselves must not enter the tunnel"
    assert f"via {lab.plan.address('concentrator')} dev wan" in back, back
    assert forward == "1"
    assert "vxlan id 1" in tos and "dstport 4789" in tos and "tos inherit" not in tos, tos
    assert result.received and result.hops == 1
    assert described["tunnels"][0]["ends"]["client"]["address"] == "198.18.2.1/24"
    assert described["nodes"]["concentrator"]["interfaces"]["vpn"] == "198.18.2.2/24"


FLOOD = [sys.executable, "-m", "tests.helpers.udp_flood"]


def test_plain_tunnel_loses_priority_under_congestion(registry, no_leftovers, tmp_path):
    """An unmarked flood outside the tunnel fills the uplink's bulk class: the EF stream in a plain tunnel
    queues behind it; copied to the outer header, its DSCP puts it back in the priority class."""
    results = {}
    for copy_dscp in (False, True):
        with tunnel_lab("vxlan", copy_dscp, registry) as lab:
            flooding = lab.node("viewer").popen(
                [
                    sys.executable,
                    "-m",
                    "tests.helpers.udp_flood",
                    "send",
                    str(lab.plan.address("gateway")),
                    str(25e6),
                    "9",
                ],
                cwd=REPO,
            )
            try:
                results[copy_dscp] = ef_probe(lab, tmp_path, count=300, pps=50)
            finally:
                flooding.wait(timeout=60)
    plain, copied = results[False], results[True]
    assert copied.loss_rate == 0 and np.percentile(copied.delays_ms, 95) < 5
    # in the bulk class behind a 1000-packet queue flooded at 2.5 times the rate: most packets are lost
    # and the ones that arrive waited about a second
    summary = f"plain tunnel: {plain.loss_rate:.0%} lost, p95 {np.percentile(plain.delays_ms, 95):.0f} ms"
    assert plain.loss_rate > 0.3, summary
    assert np.percentile(plain.delays_ms, 95) > 200, summary


@pytest.mark.parametrize("variant", ["tunnel", "tunnel-dscp-copied", "no-tunnel"])
def test_vpn_scenario_builds(registry, no_leftovers, variant):
    loaded = load_scenario(VPN)
    scenario = loaded.variant(variant)
    with Lab(scenario, registry=registry, router_template=loaded.variant_templates[variant]) as lab:
        device = lab.node("client").run(["ip", "-d", "link", "show", "vpn"]).stdout
        route = lab.node("client").run(["ip", "route", "get", str(lab.plan.address("gateway"))]).stdout
        result = udp_probe(
            lab.node("client").netns_path, lab.node("gateway").netns_path, str(lab.plan.address("gateway"))
        )
    assert "vxlan" in device and "mtu 1450" in device
    assert ("tos inherit" in device) == (variant == "tunnel-dscp-copied")
    assert ("dev vpn" in route) == (variant != "no-tunnel"), route
    assert result.received


def test_cli_lab_check_reaches_every_host_through_the_tunnel(registry, no_leftovers):
    result = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "lab", "check", str(VPN), "--variant", "tunnel"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all hosts reach each other" in result.stdout
