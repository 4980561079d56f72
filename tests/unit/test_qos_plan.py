"""Router template planning: u32 keys, port blocks, class trees, DSCP rules, tc-script expansion."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from testbed.errors import InputError
from testbed.lab import police, qos, qos_rules, sqm, tc_script
from testbed.scenario.load import load_template
from testbed.scenario.router_template import RouterTemplate
from tests.helpers import REPO

ROUTERS = REPO / "scenarios" / "routers"
SHIPPED = sorted(p.stem for p in ROUTERS.glob("*.yaml"))
MEDIA = ipaddress.IPv4Network("203.0.113.0/24")  # what shipped scenarios use as edge.media_prefix


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
    assert "-A vtb-dscp -i wan -j DSCP --set-dscp 0" in qos_rules.dscp_rules(bleach, ["wan", "lan"])
    assert "-A vtb-dscp -i lan -j DSCP --set-dscp 0" in qos_rules.dscp_rules(bleach, ["wan", "lan"])
    remark = RouterTemplate.model_validate({"ingress_dscp": "remark", "remark": [{"from": "EF", "to": 34}]})
    assert "-m dscp --dscp 46 -j DSCP --set-dscp 34" in qos_rules.dscp_rules(remark, ["wan"])
    trust = qos_rules.dscp_rules(RouterTemplate(), ["wan"])
    assert ":vtb-dscp - [0:0]" in trust and "-A " not in trust, "trust empties the chain"


def test_script_expansion_and_checks():
    template = RouterTemplate.model_validate(
        {
            "kind": "tc-script",
            "script": ("# upstream\n\ntc qdisc add dev {wan} root tbf rate {wan_rate} burst 10kb latency 50ms\n"),
        }
    )
    assert tc_script.expand_script(template, {"wan": "wan", "wan_rate": "10000000bit"}) == [
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
        tc_script.expand_script(template, {"wan": "wan", "wan_rate": None})
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
    if template.kind == "sqm":  # cake and fq_codel give ARP its own flow queue; prio files it first
        assert template.sqm is not None
        if template.sqm.qdisc == "prio":
            assert any("arp" in argv and argv[-1] == "10:1" for argv in sqm.prio_commands("wan", 100))
        return
    for policy in (template.wan, template.lan):
        plan = qos.plan_egress(template, policy, 10_000_000, media=MEDIA)
        arp = [f for f in plan.filters if f.protocol == qos.ETH_P_ARP]
        assert len(arp) == 1
        target = next(c for c in plan.classes if c.classid == arp[0].target)
        assert target.priority == min(c.priority for c in plan.classes)


def test_shipped_library_has_the_required_templates():
    assert {"fifo", "ef-priority", "ef-priority-shallow", "dscp-bleach", "multi-class"} <= set(SHIPPED)


def test_a_match_with_prefix_and_ports_needs_all_of_them():
    template = load_template(ROUTERS / "media-prefix.yaml")
    plan = qos.plan_egress(template, template.wan, 10_000_000, media=MEDIA)
    voice = plan.classes[1].classid
    by_prefix = [f for f in plan.filters if f.target == voice and qos.prefix_key(MEDIA, 16) in f.keys]
    assert by_prefix and all(qos.protocol_key("udp") in f.keys for f in by_prefix)
    assert all(any(k.endswith("+20") or k.endswith("+22") for k in f.keys) for f in by_prefix)  # and a port
    assert qos.prefix_key(MEDIA, 16) == "0xcb007100/0xffffff00+16"
    down = qos.plan_egress(template, template.lan, 10_000_000, media=MEDIA)
    assert any(qos.prefix_key(MEDIA, 12) in f.keys for f in down.filters)  # from the media prefix


def test_media_needs_the_scenarios_media_prefix():
    template = load_template(ROUTERS / "media-prefix.yaml")
    with pytest.raises(InputError, match="edge.media_prefix"):
        qos.plan_egress(template, template.wan, 10_000_000)


def test_lan_sources_behind_nat_are_classified_before_the_translation():
    template = _template(
        [
            {"name": "voice", "match": [{"dscp": ["EF"]}, {"from": "192.168.1.0/28"}], "priority": 0, "rate": "40%"},
            {"name": "video", "match": [{"dscp": ["AF41"]}], "rate": "20%"},
            {"name": "bulk", "default": True, "rate": "40%"},
        ],
        nat="masquerade",
    )
    assert qos_rules.needs_prenat_classes(template, "wan", template.wan)
    plan = qos.plan_egress(template, template.wan, 10_000_000, before_nat=True)
    assert {f.protocol for f in plan.filters} == {qos.ETH_P_ARP, qos.ETH_P_IPV6}  # IP is iptables' job
    rules = qos_rules.qos_rules(template, {"wan": "wan"}, {"wan": ["1:10", "1:11", "1:12"]}, {"wan": 10**7}, None)
    classify = [line for line in rules.splitlines() if "CLASSIFY" in line]
    assert classify == [  # the first class is written last, so it wins
        "-A vtb-qos -o wan -m dscp --dscp 34 -j CLASSIFY --set-class 1:11",
        "-A vtb-qos -o wan -m dscp --dscp 46 -j CLASSIFY --set-class 1:10",
        "-A vtb-qos -o wan -s 192.168.1.0/28 -j CLASSIFY --set-class 1:10",
    ]
    assert not qos_rules.needs_prenat_classes(template.model_copy(update={"nat": "none"}), "wan", template.wan)


def test_a_policed_class_drops_above_its_rate_and_leaves_earlier_classes_alone():
    template = load_template(ROUTERS / "llq-policed.yaml")
    plan = qos.plan_egress(template, template.wan, 2_000_000)
    voice = plan.classes[1]
    assert voice.rate == 600_000 and voice.ceil == 2_000_000  # served first; the policer holds it to its rate
    rules = qos_rules.qos_rules(template, {"wan": "wan"}, {"wan": ["1:10", "1:11", "1:12"]}, {"wan": 2_000_000}, None)
    lines = [line for line in rules.splitlines() if line.startswith("-A")]
    assert lines[0] == "-A vtb-qos -o wan -m dscp --dscp 48 -j RETURN"  # control is not voice's
    assert lines[2] == (
        "-A vtb-qos -o wan -m dscp --dscp 46 -m hashlimit --hashlimit-above 75000b/s "
        "--hashlimit-burst 77250b --hashlimit-name vtb-wan-1 -j DROP"
    )
    assert lines[3] == "-A vtb-qos -o wan -m dscp --dscp 46 -j RETURN"
    assert not any("bulk" in line for line in lines) and len(lines) == 4


def test_a_policed_class_takes_no_ceil_and_is_never_the_default():
    with pytest.raises(ValidationError, match="takes no ceil"):
        _template([{"name": "v", "match": [{"dscp": ["EF"]}], "rate": "30%", "ceil": "50%", "police": True}])
    with pytest.raises(ValidationError, match="cannot be policed"):
        _template([{"name": "v", "rate": "30%", "police": True, "default": True}])


def test_prio_bands_by_dscp():
    commands = sqm.prio_commands("wan", 200)
    assert commands[0][:10] == ["tc", "qdisc", "add", "dev", "wan", "parent", "1:1", "handle", "10:", "prio"]
    assert commands[0][-16:] == ["1"] * 16  # unclassified traffic: the middle band
    ef = next(argv for argv in commands if "0xb8" in argv)
    cs1 = next(argv for argv in commands if "0x20" in argv)
    assert ef[-1] == "10:1" and cs1[-1] == "10:3"
    assert sum("pfifo" in argv for argv in commands) == 3


def test_sqm_templates_check_their_options():
    with pytest.raises(ValidationError, match="cake's options"):
        RouterTemplate.model_validate({"kind": "sqm", "sqm": {"qdisc": "fq_codel", "nat": True}})
    with pytest.raises(ValidationError, match="kind sqm"):
        RouterTemplate.model_validate({"kind": "sqm", "wan": {"classes": [{"name": "b", "default": True}]}})


def test_tc_police_shares_one_action_per_class():
    template = load_template(ROUTERS / "llq-policed.yaml")
    plan = qos.plan_egress(template, template.wan, 2_000_000)
    voice = plan.classes[1]
    filters = [f for f in plan.filters if f.target == voice.classid]
    first = police.police_filter_commands("wan", filters * 2, voice.police_rate, 267)
    assert first[0][-12:] == [
        "flowid", "1:11", "action", "police", "rate", "600000bit", "burst", "15000",
        "conform-exceed", "drop/ok", "index", "267",
    ]  # fmt: skip
    assert first[1][-5:] == ["1:11", "action", "police", "index", "267"]  # the second attaches to it
    assert "match u8 0xb8 0xfc at 1" in " ".join(first[0])
    assert police.u32_selector("0xcb007100/0xffffff00+16") == ["match", "u32", "0xcb007100", "0xffffff00", "at", "16"]
    assert police.u32_selector("0x4e20/0xffe0+22") == ["match", "u16", "0x4e20", "0xffe0", "at", "22"]
