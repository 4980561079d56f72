"""Running the host's network tools (iptables, tc) inside a node, with one way of saying what failed."""

from __future__ import annotations

import shlex

from testbed.errors import LabError
from testbed.lab.backends.base import Node


def run_tool(node: Node, command: list[str], stdin: str | None = None) -> str:
    """``command`` in ``node``; its output, or a LabError that shows the command and what it said."""
    try:
        result = node.run(command, timeout=30, input=stdin)
    except FileNotFoundError:
        raise LabError(f"{command[0]!r} is not installed (run `make setup`)") from None
    if result.returncode != 0:
        raise LabError(f"`{shlex.join(command)}` in {node.name} failed: {(result.stdout + result.stderr).strip()}")
    return result.stdout
