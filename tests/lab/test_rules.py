"""Every iptables rule a lab writes (router DSCP chains, the userspace engine's NFQUEUE rules) lands in
one iptables backend, the pinned one: each node's whole rule set, listed with that backend's
``-save``, holds exactly the lab's rules, and the other backend holds none."""

from __future__ import annotations

import shutil

from testbed.lab import Lab, iptables
from testbed.lab.engine.harness import iptables_rule
from testbed.scenario.model import Impairment, Scenario
from tests.helpers.rules import OTHER_SAVE, rule_set


def rules_scenario(backend: str = "netns") -> Scenario:
    """A bleaching router (resolved from the scenario's template name) and two engine-impaired link ends:
    the router's (inside its template) and the gateway's."""
    return Scenario.model_validate(
        {
            "name": "rules",
            "backend": backend,
            "impairment_engine": "userspace",
            "router": {"template": "dscp-bleach"},
            "links": {"wan": {"router": {"rate": "5mbit", "delay": "10ms"}, "gateway": {"delay": "20ms"}}},
        }
    )


def expected_rules(lab: Lab) -> dict[str, set[str]]:
    """What the lab put where: the bleach chain on the router, one NFQUEUE rule per engine."""
    expected: dict[str, set[str]] = {name: set() for name in lab.nodes}
    expected["router"] |= {
        "-A PREROUTING -j vtb-dscp",
        "-A vtb-dscp -i wan -j DSCP --set-dscp 0x00",
        "-A vtb-dscp -i lan -j DSCP --set-dscp 0x00",
    }
    for (node, link), engine in lab.engines.items():
        expected[node].add(" ".join(["-A", "POSTROUTING", *iptables_rule(link, engine.queue_num)]))
    return expected


def test_every_rule_of_the_lab_is_in_the_pinned_backend(registry, no_leftovers):
    with Lab(rules_scenario(), registry=registry) as lab:
        assert set(lab.engines) == {("router", "wan"), ("gateway", "wan")}
        expected = expected_rules(lab)
        assert {name: rule_set(node) for name, node in lab.nodes.items()} == expected
        if shutil.which(OTHER_SAVE):
            assert all(rule_set(node, OTHER_SAVE) == set() for node in lab.nodes.values())
        # the engine's rule goes away through the same path when its link end no longer needs it
        lab.set_link("wan", {"gateway": Impairment()})
        assert rule_set(lab.node("gateway")) == set()
        assert rule_set(lab.node("router")) == expected["router"]


def test_generic_iptables_names_run_the_pinned_variant(registry, no_leftovers):
    """What a test or a tc-script writes as plain ``iptables`` is the pinned one too."""
    with Lab(Scenario.model_validate({"name": "plain"}), registry=registry) as lab:
        client = lab.node("client")
        assert client.run(["iptables", "-V"]).stdout == client.run([iptables.IPTABLES, "-V"]).stdout
        assert f"({'nf_tables' if iptables.BACKEND == 'nft' else 'legacy'})" in client.run(["iptables", "-V"]).stdout
