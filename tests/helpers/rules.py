"""A node's iptables rules as the pinned backend lists them."""

from __future__ import annotations

from testbed.lab import iptables
from testbed.lab.backends import Node

OTHER_SAVE = "iptables-legacy-save" if iptables.BACKEND == "nft" else "iptables-nft-save"


def rule_set(node: Node, save: str = iptables.IPTABLES_SAVE) -> set[str]:
    """The node's whole rule set (every table), one ``-A`` line per rule."""
    result = node.run([save])
    assert result.returncode == 0, result.stderr
    return {line for line in result.stdout.splitlines() if line.startswith("-A ")}
