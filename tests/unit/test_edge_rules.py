"""The router's edge chains as iptables-restore input (pure): NAT kinds and the inbound rule under NAT."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from testbed.errors import InputError
from testbed.lab.edge import INBOUND_CHAIN, NAT_CHAIN, OUTBOUND_CHAIN, edge_rules
from testbed.scenario.router_template import RouterTemplate
from tests.helpers.qos import shipped

SIDES = {"wan": "wan", "lan": "lan"}


def test_without_nat_the_chains_are_emptied():
    rules = edge_rules(RouterTemplate(), SIDES)
    assert f":{NAT_CHAIN} - [0:0]" in rules and f":{INBOUND_CHAIN} - [0:0]" in rules
    assert "-A " not in rules and rules.count("COMMIT") == 2


def test_masquerade_keeps_ports_and_lets_only_replies_in():
    rules = edge_rules(shipped("nat"), SIDES).splitlines()
    assert f"-A {NAT_CHAIN} -o wan -j MASQUERADE" in rules
    assert rules.index(f"-A {INBOUND_CHAIN} -i wan -o lan -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN") < (
        rules.index(f"-A {INBOUND_CHAIN} -i wan -o lan -j DROP")
    )


def test_symmetric_nat_picks_a_random_port_per_flow():
    assert f"-A {NAT_CHAIN} -o wan -j MASQUERADE --random-fully" in edge_rules(shipped("nat-symmetric"), SIDES)


def test_an_unknown_nat_kind_is_refused_with_the_choices():
    with pytest.raises(ValidationError, match="masquerade"):
        RouterTemplate.model_validate({"nat": "full-cone"})


def test_the_vendor_rules_open_exactly_their_list_and_drop_the_rest():
    text = edge_rules(shipped("firewall-vendor-rules"), SIDES)
    rules = [line for line in text.splitlines() if OUTBOUND_CHAIN in line]
    out = f"-A {OUTBOUND_CHAIN} -o wan -i lan"
    assert rules[1:] == [
        f"{out} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",
        f"{out} -p tcp --dport 443 -m comment --comment rule-1 -j RETURN",
        f"{out} -p udp --dport 10000:60000 -m comment --comment rule-2 -j RETURN",
        f"{out} -p tcp --dport 3478 -m comment --comment rule-3 -j RETURN",
        f"{out} -p udp --dport 3478 -m comment --comment rule-4 -j RETURN",
        f"{out} -j DROP",
    ]
    assert f"-A {INBOUND_CHAIN} -i wan -o lan -j DROP" in text


def test_a_rule_per_prefix_and_port():
    template = RouterTemplate.model_validate(
        {
            "firewall": {
                "default": "reject",
                "rules": [
                    {
                        "protocol": "udp",
                        "ports": [53, "5000-5010"],
                        "to": ["192.0.2.0/24", "198.51.100.0/24"],
                        "action": "drop",
                    }
                ],
            }
        }
    )
    rules = [line for line in edge_rules(template, SIDES).splitlines() if "rule-1" in line]
    assert len(rules) == 4 and all(line.endswith("-j DROP") for line in rules)
    assert any("-d 198.51.100.0/24 --dport 5000:5010" in line for line in rules)
    assert edge_rules(template, SIDES).splitlines()[-2].endswith("-j REJECT")


@pytest.mark.parametrize(
    "rule, words",
    [
        ({"protocol": "udp", "ports": ["70000"]}, "1-65535"),
        ({"ports": [443]}, "needs protocol"),
        ({"protocol": "udp", "to": ["10.0.0.300/8"]}, "to"),
        ({"protocol": "sctp"}, "protocol"),
        ({"action": "allow"}, "accept"),
    ],
)
def test_a_bad_rule_says_what_is_wrong(rule, words):
    with pytest.raises(ValidationError, match=words):
        RouterTemplate.model_validate({"firewall": {"rules": [rule]}})


def test_media_names_the_scenarios_media_prefix():
    template = RouterTemplate.model_validate(
        {"firewall": {"rules": [{"protocol": "udp", "ports": ["10000-60000"], "to": "media"}]}}
    )
    lines = [line for line in edge_rules(template, SIDES, ipaddress.IPv4Network("203.0.113.0/24")).splitlines()]
    assert any("-p udp -d 203.0.113.0/24 --dport 10000:60000" in line and "rule-1" in line for line in lines)
    with pytest.raises(InputError, match="edge.media_prefix"):
        edge_rules(template, SIDES)
