"""Router template planning: u32 keys, port blocks, class trees, DSCP rules, tc-script expansion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from testbed.errors import InputError
from testbed.lab import qos
from testbed.scenario.load import load_template
from testbed.scenario.router_template import RouterTemplate
from tests.helpers import REPO

ROUTERS = REPO / "scenarios" / "routers"
SHIPPED = sorted(p.stem for p in ROUTERS.glob("*.yaml"))


@given(st.integers(1, 65535), st.integers(1, 65535))
def test_port_blocks_cover_exactly_the_range(a, b):
    low, high = min(a, b), max(a, b)
    covered = []
    for value, mask in qos.port_blocks(low, high):
        size = (~mask & 0xFFFF) + 1
        assert value & ~mask & 0xFFFF == 0, "a block starts on its own boundary"
        covered.append((value, value + size - 1))
    assert covered[0][0] == low and covered[-1][1] == high
    assert all(covered[i][1] + 1 == covered[i + 1][0] for i in range(len(covered) - 1))
    assert len(covered) <= 32


def test_dialer_port_range_needs_few_blocks():
    assert len(qos.port_blocks(10000, 60000)) < 20
    assert qos.port_blocks(443, 443) == [(443, 0xFFFF)]


def test_dscp_and_protocol_keys():
    assert qos.dscp_key(46) == "0xb8/0xfc+1"
    assert qos.dscp_key(0) == "0x00/0xfc+1"
    assert qos.protocol_key("udp") == "0x11/0xff+9"


def _template(classes, **extra) -> RouterTemplate:
    return RouterTemplate.model_validate({"wan": {"classes": classes}, **extra})


def test_plan_orders_filters_by_class_and_sets_default():
    template = load_template(ROUTERS / "ef-priority.yaml")
    plan = qos.plan_egress(template, template.wan, 10_000_000)
    assert [c.name for c in plan.classes] == ["control", "voice", "bulk"]
    assert [c.rate for c in plan.classes] == [500_000, 4_000_000, 5_500_000]
    assert all(c.ceil == 10_000_000 for c in plan.classes)
    assert plan.default_minor == 0x12
    protocols = [f.protocol for f in plan.filters]
    assert protocols[:2] == [qos.ETH_P_ARP, qos.ETH_P_IPV6], "neighbour discovery is classified first"
    assert {f.target for f in plan.filters[:2]} == {plan.classes[0].classid}
    voice = [f for f in plan.filters if f.target == plan.classes[1].classid]
    assert [f.keys for f in voice] == [("0xb8/0xfc+1",)]
    prios = [f.prio for f in plan.filters]
    assert prios == sorted(prios) and len(set(zip(prios, protocols, strict=False))) == len(set(prios)), (
        "one protocol per filter priority"
    )


def test_port_match_filters_source_and_destination():
    template = _template(
        [
            {"name": "media", "match": [{"protocol": "udp", "ports": "10000-60000"}]},
            {"name": "rest", "default": True, "rate": "50%"},
        ]
    )
    plan = qos.plan_egress(template, template.wan, 10_000_000)
    media = [f for f in plan.filters if f.target == plan.classes[0].classid and f.protocol == qos.ETH_P_IP]
    assert len(media) == 2 * len(qos.port_blocks(10000, 60000))
    assert all(qos.IHL_5 in f.keys and qos.protocol_key("udp") in f.keys for f in media)
    offsets = {f.keys[-1].rsplit("+", 1)[1] for f in media}
    assert offsets == {"20", "22"}


def test_control_class_defaults_to_highest_priority_and_can_be_turned_off():
    classes = [
        {"name": "bulk", "default": True, "priority": 7, "rate": "50%"},
        {"name": "voice", "match": [{"dscp": ["EF"]}], "priority": 1, "rate": "50%"},
    ]
    plan = qos.plan_egress(_template(classes), _template(classes).wan, 10_000_000)
    assert plan.filters[0].protocol == qos.ETH_P_ARP and plan.filters[0].target == plan.classes[1].classid
    off = _template(classes, control_class="none")
    assert all(f.protocol == qos.ETH_P_IP for f in qos.plan_egress(off, off.wan, 10_000_000).filters)


def test_absolute_rates_above_the_link_are_refused():
    template = _template(
        [
            {"name": "voice", "match": [{"dscp": ["EF"]}], "rate": "8mbit"},
            {"name": "rest", "default": True, "rate": "5mbit"},
        ]
    )
    with pytest.raises(InputError, match="guarantee 13mbit"):
        qos.plan_egress(template, template.wan, 10_000_000)


@pytest.mark.parametrize(
    "classes, message",
    [
        (
            [{"name": "a", "rate": "60%", "default": True}, {"name": "b", "match": [{"dscp": [46]}], "rate": "50%"}],
            "add up to 110%",
        ),
        ([{"name": "a", "rate": "60%", "ceil": "50%", "default": True}], "ceil 50% is below its rate"),
        ([{"name": "a", "rate": "60%"}], "exactly one class must be 'default: true'"),
    ],
)
def test_bad_policies_are_refused(classes, message):
    with pytest.raises(ValidationError, match=message):
        _template(classes)


def test_control_class_must_exist():
    with pytest.raises(ValidationError, match="control_class 'ctl' is not a class of wan"):
        _template([{"name": "a", "default": True}], control_class="ctl")


def test_dscp_rules():
    bleach = RouterTemplate.model_validate({"ingress_dscp": "bleach"})
    assert "-A vtb-dscp -i wan -j DSCP --set-dscp 0" in qos.dscp_rules(bleach, ["wan", "lan"])
    assert "-A vtb-dscp -i lan -j DSCP --set-dscp 0" in qos.dscp_rules(bleach, ["wan", "lan"])
    remark = RouterTemplate.model_validate({"ingress_dscp": "remark", "remark": [{"from": "EF", "to": 34}]})
    assert "-m dscp --dscp 46 -j DSCP --set-dscp 34" in qos.dscp_rules(remark, ["wan"])
    trust = qos.dscp_rules(RouterTemplate(), ["wan"])
    assert ":vtb-dscp - [0:0]" in trust and "-A " not in trust, "trust empties the chain"


def test_script_expansion_and_checks():
    template = RouterTemplate.model_validate(
        {
            "kind": "tc-script",
            "script": ("# upstream\n\ntc qdisc add dev {wan} root tbf rate {wan_rate} burst 10kb latency 50ms\n"),
        }
    )
    assert qos.expand_script(template, {"wan": "wan", "wan_rate": "10000000bit"}) == [
        (
            3,
            [
                "tc",
                "qdisc",
                "add",
                "dev",
                "wan",
                "root",
                "tbf",
                "rate",
                "10000000bit",
                "burst",
                "10kb",
                "latency",
                "50ms",
            ],
        )
    ]
    with pytest.raises(InputError, match="line 3 uses {wan_rate}"):
        qos.expand_script(template, {"wan": "wan", "wan_rate": None})
    for script, message in [
        ("ip link set wan down", "only tc commands"),
        ("tc qdisc add dev {eth0} root pfifo", "unknown placeholder {eth0}"),
    ]:
        with pytest.raises(ValidationError, match=message):
            RouterTemplate.model_validate({"kind": "tc-script", "script": script})


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_templates_protect_neighbour_discovery(name):
    template = load_template(ROUTERS / f"{name}.yaml")
    if template.kind == "tc-script":
        assert "protocol arp" in template.script
        return
    for policy in (template.wan, template.lan):
        plan = qos.plan_egress(template, policy, 10_000_000)
        arp = [f for f in plan.filters if f.protocol == qos.ETH_P_ARP]
        assert len(arp) == 1
        target = next(c for c in plan.classes if c.classid == arp[0].target)
        assert target.priority == min(c.priority for c in plan.classes)


def test_shipped_library_has_the_required_templates():
    assert {"fifo", "ef-priority", "ef-priority-shallow", "dscp-bleach", "multi-class"} <= set(SHIPPED)
