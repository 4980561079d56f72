"""On the docker backend too, every rule of the lab (the router's DSCP chain, the engines' NFQUEUE rules)
is written by the host's pinned iptables inside the container's namespace: one backend for all of them,
whatever the node image's own iptables would pick."""

from __future__ import annotations

import shutil

import pytest

from testbed.lab import Lab
from testbed.lab.engine.harness import iptables_rule
from testbed.scenario.model import Scenario
from tests.helpers.rules import OTHER_SAVE, rule_set

pytestmark = pytest.mark.docker


def test_every_rule_of_a_docker_lab_is_in_the_pinned_backend(engine, registry, no_leftovers):
    scenario = Scenario.model_validate(
        {
            "name": "rules",
            "backend": "docker",
            "impairment_engine": "userspace",
            "router": {"template": "dscp-bleach"},
            "links": {"wan": {"router": {"rate": "5mbit", "delay": "10ms"}, "gateway": {"delay": "20ms"}}},
        }
    )
    with Lab(scenario, registry=registry) as lab:
        assert set(lab.engines) == {("router", "wan"), ("gateway", "wan")}
        expected: dict[str, set[str]] = {name: set() for name in lab.nodes}
        expected["router"] |= {
            "-A PREROUTING -j vtb-dscp",
            "-A vtb-dscp -i wan -j DSCP --set-dscp 0x00",
            "-A vtb-dscp -i lan -j DSCP --set-dscp 0x00",
        }
        for (node, link), process in lab.engines.items():
            expected[node].add(" ".join(["-A", "POSTROUTING", *iptables_rule(link, process.queue_num)]))
        assert {name: rule_set(node) for name, node in lab.nodes.items()} == expected
        if shutil.which(OTHER_SAVE):
            assert all(rule_set(node, OTHER_SAVE) == set() for node in lab.nodes.values())
