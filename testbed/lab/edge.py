"""The router's edge towards the WAN: address translation and a stateful firewall, as iptables chains
of the router's own, refilled whenever a template is applied (a template without them empties them;
flows already translated keep their conntrack entries, as on a real router).

RFC 4787 behaviours of the two NAT kinds (Linux conntrack):

- ``masquerade``: endpoint-independent mapping (the source port is kept where free, and one inside
  address and port keep their outside port for every destination), address-and-port-dependent
  filtering (only replies to what went out come in). What most small-office routers do.
- ``symmetric``: address-and-port-dependent mapping (``--random-fully``: a random outside port per
  flow), the same filtering. What some enterprise firewalls and carrier-grade NAT do.

Under NAT or a firewall nothing from the WAN reaches the LAN unless it belongs to a flow the LAN
opened: the LAN's private addresses are not routed on the internet, which the lab's routing otherwise
would allow. The firewall decides new LAN -> WAN flows by its rules (first match wins, else its
default); replies pass by conntrack state. Its UDP timeouts are the namespace's conntrack sysctls.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pyroute2 import Conntrack

from testbed.errors import InputError
from testbed.lab import iptables, netns
from testbed.lab.backends import Node
from testbed.lab.tools import run_tool
from testbed.scenario.router_template import MEDIA, FirewallRule, RouterTemplate

NAT_CHAIN = "vtb-nat"
INBOUND_CHAIN = "vtb-inbound"
OUTBOUND_CHAIN = "vtb-outbound"
JUMPS = (
    ("nat", "POSTROUTING", NAT_CHAIN),
    ("filter", "FORWARD", INBOUND_CHAIN),
    ("filter", "FORWARD", OUTBOUND_CHAIN),
)
TARGETS = {"accept": "RETURN", "drop": "DROP", "reject": "REJECT"}  # RETURN: FORWARD's policy accepts
UDP_TIMEOUTS = {
    "udp_timeout": "net.netfilter.nf_conntrack_udp_timeout",
    "udp_stream_timeout": "net.netfilter.nf_conntrack_udp_timeout_stream",
}


def edge_rules(
    template: RouterTemplate, sides: dict[str, str], media_prefix: ipaddress.IPv4Network | None = None
) -> str:
    """An iptables-restore input that (re)fills the router's edge chains (pure; unit-tested). Rules that
    say ``to: media`` match the scenario's ``edge.media_prefix``."""
    wan, lan = sides.get("wan"), sides.get("lan")
    nat = ["*nat", f":{NAT_CHAIN} - [0:0]"]
    filters = ["*filter", f":{INBOUND_CHAIN} - [0:0]", f":{OUTBOUND_CHAIN} - [0:0]"]
    if template.nat != "none" and wan:
        random = " --random-fully" if template.nat == "symmetric" else ""
        nat.append(f"-A {NAT_CHAIN} -o {wan} -j MASQUERADE{random}")
    if (template.nat != "none" or template.firewall) and wan:
        into = f" -o {lan}" if lan else ""
        filters += [
            f"-A {INBOUND_CHAIN} -i {wan}{into} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",
            f"-A {INBOUND_CHAIN} -i {wan}{into} -j DROP",
        ]
    if template.firewall and wan:
        out = f" -o {wan}" + (f" -i {lan}" if lan else "")
        filters.append(f"-A {OUTBOUND_CHAIN}{out} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN")
        for number, rule in enumerate(template.firewall.rules, start=1):
            filters += _rule_lines(out, number, rule, media_prefix)
        filters.append(f"-A {OUTBOUND_CHAIN}{out} -j {TARGETS[template.firewall.default]}")
    return "\n".join([*nat, "COMMIT", *filters, "COMMIT", ""])


def _rule_lines(out: str, number: int, rule: FirewallRule, media: ipaddress.IPv4Network | None) -> list[str]:
    """One iptables rule per destination prefix and port range (any when none is given)."""
    protocol = f" -p {rule.protocol}" if rule.protocol else ""
    ports = [f" --dport {p.replace('-', ':')}" for p in rule.ports] or [""]
    if MEDIA in rule.to and media is None:
        raise InputError(
            f"firewall rule {number} says 'to: media', but the scenario names no edge.media_prefix "
            "(e.g. edge: {media_prefix: 203.0.113.0/24})"
        )
    prefixes = [f" -d {media if prefix == MEDIA else prefix}" for prefix in rule.to] or [""]
    target = f" -m comment --comment rule-{number} -j {TARGETS[rule.action]}"
    return [f"-A {OUTBOUND_CHAIN}{out}{protocol}{to}{port}{target}" for to in prefixes for port in ports]


def install_edge(
    node: Node, template: RouterTemplate, sides: dict[str, str], media_prefix: ipaddress.IPv4Network | None = None
) -> None:
    """Fill the edge chains for ``template`` and, once it has NAT or a firewall, make sure the built-in
    chains jump to them (once)."""
    run_tool(node, [iptables.IPTABLES_RESTORE, "--noflush"], edge_rules(template, sides, media_prefix))
    firewall = template.firewall
    for field, sysctl in UDP_TIMEOUTS.items():
        seconds = getattr(firewall, field) if firewall else None
        if seconds is not None:
            run_tool(node, ["sysctl", "-q", "-w", f"{sysctl}={seconds}"])
    if template.nat == "none" and template.firewall is None:
        return  # the chains are empty now; a lab that never had an edge gets no jumps to them
    for table, chain, target in JUMPS:
        rules = run_tool(node, [iptables.IPTABLES_SAVE, "-t", table])
        if f"-A {chain} -j {target}" not in rules:
            run_tool(node, [iptables.IPTABLES, "-t", table, "-A", chain, "-j", target])


def flush_conntrack(netns_path: str | Path) -> int:
    """Forget every connection (and NAT mapping) the namespace tracks, as a firewall failover or a
    router reboot does; returns how many there were."""

    def flush() -> int:
        tracker = Conntrack()
        try:
            count = int(tracker.count())
            tracker.flush()
            return count
        finally:
            tracker.close()

    return netns.run_in(netns_path, flush)
