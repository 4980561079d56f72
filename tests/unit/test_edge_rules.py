"""The router's edge chains as iptables-restore input (pure): NAT kinds and the inbound rule under NAT."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from testbed.lab.edge import INBOUND_CHAIN, NAT_CHAIN, edge_rules
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
