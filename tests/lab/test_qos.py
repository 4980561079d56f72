"""Router templates with real traffic: classification by tc counters, priority under congestion,
DSCP bleaching seen by the receiver, and tc-script templates."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from testbed.errors import InputError, LabError
from testbed.lab import Lab
from testbed.lab.measure import probe_stream
from testbed.scenario.model import Scenario
from testbed.scenario.router_template import RouterTemplate
from tests.helpers import REPO
from tests.helpers.lab import lab_namespaces
from tests.helpers.qos import class_packets, shipped


def bottleneck(rate: str = "10mbit") -> Scenario:
    """client --lan-- router --wan-- gateway, the router's upstream shaped to ``rate``."""
    return Scenario.model_validate({"name": "bottleneck", "links": {"wan": {"router": {"rate": rate}}}})


def probe(lab: Lab, tmp_path, **options):
    return probe_stream(lab.node("client"), lab.node("gateway"), str(lab.plan.address("gateway")), tmp_path, **options)


def one_class(match: dict) -> RouterTemplate:
    policy = {
        "classes": [
            {"name": "control", "match": [{"dscp": ["CS6"]}], "priority": 0, "rate": "5%"},
            {"name": "voice", "match": [match], "priority": 1, "rate": "40%"},
            {"name": "bulk", "rate": "55%", "default": True},
        ]
    }
    return RouterTemplate.model_validate({"wan": policy, "lan": policy})


@pytest.mark.parametrize(
    "match",
    [{"dscp": ["EF"]}, {"dscp": [46]}, {"protocol": "udp", "ports": ["10000-60000"]}],
    ids=["dscp-name", "dscp-number", "udp-port-range"],
)
def test_classification_by_tc_counters(registry, no_leftovers, tmp_path, match):
    with Lab(bottleneck(), registry=registry, router_template=one_class(match)) as lab:
        before = class_packets(lab)
        if "ports" in match:
            probe(lab, tmp_path, pps=500, count=200, port=20000, source_port=5003)  # in the range: voice
            middle = class_packets(lab)
            probe(lab, tmp_path, pps=500, count=300, port=5002, source_port=5003)  # below it: bulk
        else:
            probe(lab, tmp_path, pps=500, count=200, dscp=46)
            middle = class_packets(lab)
            probe(lab, tmp_path, pps=500, count=300, dscp=0)
        after = class_packets(lab)
    assert middle["voice"] - before["voice"] == 200
    assert after["voice"] == middle["voice"]
    assert after["bulk"] - middle["bulk"] == 300


def test_lan_side_classifies_downstream(registry, no_leftovers, tmp_path):
    with Lab(bottleneck(), registry=registry, router_template=shipped("ef-priority")) as lab:
        probe_stream(
            lab.node("gateway"),
            lab.node("client"),
            str(lab.plan.address("client")),
            tmp_path,
            pps=500,
            count=100,
            dscp=46,
        )
        lan = class_packets(lab, "lan")
    assert lan["voice"] == 100


def flood(lab: Lab, rate_bps: float, seconds: float) -> subprocess.Popen:
    """Unmarked UDP from client to gateway at ``rate_bps`` (nobody listens; the router's queue is the point)."""
    return lab.node("client").popen(
        [
            sys.executable,
            "-m",
            "tests.helpers.udp_flood",
            "send",
            str(lab.plan.address("gateway")),
            str(rate_bps),
            str(seconds),
        ],
        cwd=REPO,
    )


def voice_under_flood(lab: Lab, tmp_path, seconds: float):
    """A 50 packets/s EF stream (one direction of a call) while a flood at 2.5x the 10 Mbit bottleneck runs."""
    flooding = flood(lab, 25e6, seconds + 3)
    try:
        stream = probe(lab, tmp_path, pps=50, count=int(seconds * 50), size=200, dscp=46, port=20000)
    finally:
        flooding.wait(timeout=60)
    return stream


def test_ef_priority_protects_voice_for_60_seconds(registry, no_leftovers, tmp_path):
    with Lab(bottleneck(), registry=registry, router_template=shipped("ef-priority")) as lab:
        stream = voice_under_flood(lab, tmp_path, seconds=60)
        counts = class_packets(lab)
    p95 = np.percentile(stream.delays_ms, 95)
    assert stream.loss_rate == 0, f"{stream.loss_rate:.1%} of the EF probe lost"
    assert p95 < 5, f"EF p95 one-way delay {p95:.2f} ms"
    assert counts["voice"] >= 3000
    assert counts["bulk"] > 10 * counts["voice"], "the flood really went through the bulk class"


def test_fifo_lets_the_flood_ruin_voice(registry, no_leftovers, tmp_path):
    with Lab(bottleneck(), registry=registry, router_template=shipped("fifo")) as lab:
        stream = voice_under_flood(lab, tmp_path, seconds=10)
    p95 = np.percentile(stream.delays_ms, 95)
    assert stream.loss_rate > 0.3, f"only {stream.loss_rate:.1%} lost"
    assert p95 > 500, f"p95 one-way delay only {p95:.0f} ms behind a 1000-packet FIFO"


def test_dscp_bleach_rewrites_ef_to_zero(registry, no_leftovers, tmp_path):
    with Lab(bottleneck(), registry=registry, router_template=shipped("dscp-bleach")) as lab:
        stream = probe(lab, tmp_path, pps=500, count=200, dscp=46)
        counts = class_packets(lab)
    assert set(stream.dscp.tolist()) == {0}, "the gateway received packets still marked"
    assert counts["voice"] == 0 and counts["bulk"] >= 200


def test_trusting_router_keeps_ef(registry, no_leftovers, tmp_path):
    with Lab(bottleneck(), registry=registry, router_template=shipped("ef-priority")) as lab:
        stream = probe(lab, tmp_path, pps=500, count=100, dscp=46)
    assert set(stream.dscp.tolist()) == {46}


def test_remark_rewrites_one_class(registry, no_leftovers, tmp_path):
    template = RouterTemplate.model_validate({"ingress_dscp": "remark", "remark": [{"from": "EF", "to": "AF41"}]})
    with Lab(bottleneck(), registry=registry, router_template=template) as lab:
        remarked = probe(lab, tmp_path, pps=500, count=50, dscp=46)
        untouched = probe(lab, tmp_path, pps=500, count=50, dscp=26)
    assert set(remarked.dscp.tolist()) == {34} and set(untouched.dscp.tolist()) == {26}


def test_tc_script_applies_and_goes_with_the_lab(registry, no_leftovers, tmp_path):
    with Lab(bottleneck(), registry=registry, router_template=shipped("tc-script-example")) as lab:
        run_id = lab.run_id
        classes = lab.node("router").run(["tc", "class", "show", "dev", "wan"]).stdout
        probe(lab, tmp_path, pps=500, count=100, dscp=46)
        shown = lab.node("router").run(["tc", "-s", "class", "show", "dev", "wan", "classid", "1:10"]).stdout
    assert "class htb 1:1 root rate 10Mbit" in classes and "class htb 1:10" in classes
    packets = int(re.search(r"Sent \d+ bytes (\d+) pkt", shown)[1])
    assert 100 <= packets <= 102, shown  # the EF probe (and perhaps an ARP exchange) went through 1:10
    assert lab_namespaces(run_id) == set()


def test_failing_tc_script_names_its_line_and_leaves_nothing(registry, no_leftovers):
    template = RouterTemplate.model_validate(
        {
            "kind": "tc-script",
            "script": (
                "# comment\ntc qdisc add dev {wan} root handle 1: htb default 20\n"
                "tc class add dev {wan} parent 9: classid 9:1 htb rate 1mbit\n"
            ),
        }
    )
    with pytest.raises(LabError, match=r"tc-script line 3: `tc class add dev wan parent 9: .*` in .* failed"):
        with Lab(bottleneck(), registry=registry, router_template=template):
            pass


def test_tc_script_rate_placeholder_needs_a_rate(registry, no_leftovers):
    template = RouterTemplate.model_validate(
        {"kind": "tc-script", "script": "tc qdisc add dev {lan} root tbf rate {lan_rate} burst 10kb latency 50ms\n"}
    )
    with pytest.raises(InputError, match=r"\{lan_rate\}"):
        with Lab(bottleneck(), registry=registry, router_template=template):
            pass


def test_switching_templates_replaces_the_tree(registry, no_leftovers, tmp_path):
    with Lab(bottleneck(), registry=registry, router_template=shipped("fifo")) as lab:
        assert set(class_packets(lab)) == {"link", "all"}
        lab.set_router_template(shipped("multi-class"))
        probe(lab, tmp_path, pps=500, count=100, dscp=34)  # AF41: video
        counts = class_packets(lab)
        lab.set_router_template(shipped("dscp-bleach"))
        lab.set_router_template(shipped("ef-priority"))
        stream = probe(lab, tmp_path, pps=500, count=20, dscp=46)
    assert set(counts) == {"link", "control", "voice", "video", "signalling", "bulk"}
    assert counts["video"] == 100
    assert set(stream.dscp.tolist()) == {46}, "switching away from bleach removed the rewrite"
