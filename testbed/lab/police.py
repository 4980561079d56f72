"""Policed priority classes with tc's own policer, where the kernel has it (act_police: stock kernels).

Each u32 filter of a policed class gets a ``police`` action (``conform-exceed drop/ok``: above the rate
dropped, within it classified as planned); the class's filters share one action by index, so the class
as a whole is held to its rate. The burst is 200 ms of the rate, Cisco's default for ``priority``.
Written with the tc binary: pyroute2's police action cannot share an index. Where the kernel lacks
act_police (this CI's kernel), the first filter fails, nothing is left half-installed, and the caller
polices with iptables' hashlimit instead (``qos_rules``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from testbed.errors import LabError
from testbed.lab.backends.base import Node
from testbed.lab.impair import handle_text
from testbed.lab.tools import run_tool

__all__ = ["BURST_S", "police_filter_commands", "install_tc_policers", "u32_selector"]

BURST_S = 0.2  # Cisco's default burst for a priority class
MIN_BURST = 2 * 1514
PROTOCOLS = {0x0800: "ip", 0x0806: "arp", 0x86DD: "ipv6"}


class Filter(Protocol):
    """A planned u32 filter (``qos.FilterPlan``)."""

    @property
    def prio(self) -> int: ...
    @property
    def protocol(self) -> int: ...
    @property
    def keys(self) -> tuple[str, ...]: ...
    @property
    def target(self) -> int: ...


def u32_selector(key: str) -> list[str]:
    """``0xb8/0xfc+1`` (pyroute2's u32 key) -> ``match u8 0xb8 0xfc at 1`` (tc's); the width follows
    the mask's digits."""
    value_mask, _, offset = key.partition("+")
    value, _, mask = value_mask.partition("/")
    digits = len(mask.removeprefix("0x"))
    width = "u8" if digits <= 2 else "u16" if digits <= 4 else "u32"
    return ["match", width, value, mask, "at", offset]


def police_filter_commands(ifname: str, filters: Sequence[Filter], rate: int, index: int) -> list[list[str]]:
    """tc commands for a policed class's filters (pure; unit-tested): the first creates the shared
    action, the others attach to it by index."""
    commands = []
    burst = max(int(rate / 8 * BURST_S), MIN_BURST)
    for number, rule in enumerate(filters):
        argv = ["tc", "filter", "add", "dev", ifname, "parent", "1:", "prio", str(rule.prio)]
        argv += ["protocol", PROTOCOLS[rule.protocol], "u32"]
        for key in rule.keys:
            argv += u32_selector(key)
        argv += ["flowid", handle_text(rule.target), "action", "police"]
        if number == 0:
            argv += ["rate", f"{rate}bit", "burst", str(burst), "conform-exceed", "drop/ok"]
        argv += ["index", str(index)]
        commands.append(argv)
    return commands


def install_tc_policers(node: Node, commands: list[list[str]]) -> bool:
    """Install the filters; False (nothing installed) when the kernel refuses the first one, i.e. has no
    act_police. A later failure is an error."""
    for number, argv in enumerate(commands):
        try:
            run_tool(node, argv)
        except LabError:
            if number == 0:
                return False
            raise
    return True
