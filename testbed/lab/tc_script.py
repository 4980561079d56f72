"""A ``kind: tc-script`` router template: the user's own tc commands, with the router's interface names
and link rates filled in, run in the router's namespace (an error names the script line)."""

from __future__ import annotations

import shlex

from testbed.errors import InputError, LabError
from testbed.lab.backends.base import Node
from testbed.lab.tools import run_tool
from testbed.scenario.router_template import RouterTemplate, script_commands

__all__ = ["expand_script", "run_script"]


def expand_script(template: RouterTemplate, placeholders: dict[str, str | None]) -> list[tuple[int, list[str]]]:
    """The script's commands with {wan}, {lan}, {wan_rate}, {lan_rate} filled in, split into argv."""
    commands = []
    for number, text in script_commands(template.script or ""):
        for name, value in placeholders.items():
            if "{" + name + "}" in text:
                if value is None:
                    raise InputError(
                        f"tc-script line {number} uses {{{name}}}, but the scenario gives the "
                        f"router's end of that link no rate"
                    )
                text = text.replace("{" + name + "}", value)
        commands.append((number, shlex.split(text)))
    return commands


def run_script(node: Node, template: RouterTemplate, placeholders: dict[str, str | None]) -> None:
    for number, argv in expand_script(template, placeholders):
        try:
            run_tool(node, argv)
        except LabError as exc:
            raise LabError(f"tc-script line {number}: {exc}") from None
