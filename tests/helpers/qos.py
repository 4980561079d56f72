"""Router classes as the kernel counts them, and the shipped templates."""

from __future__ import annotations

from testbed.lab import Lab
from testbed.lab.queues import read_queues
from testbed.scenario.load import load_template
from testbed.scenario.router_template import RouterTemplate
from tests.helpers import REPO

ROUTERS = REPO / "scenarios" / "routers"


def shipped(name: str) -> RouterTemplate:
    return load_template(ROUTERS / f"{name}.yaml")


def class_packets(lab: Lab, ifname: str = "wan", node: str = "router") -> dict[str, int]:
    """Packets sent per HTB class on the interface, by class name (the lab's handle -> name map)."""
    names = lab.class_names[node][ifname]
    samples = read_queues(lab.netlink(lab.node(node).netns_path), node, ifname, 0.0)
    return {names[s.handle]: s.packets for s in samples if s.object == "class" and s.handle in names}
