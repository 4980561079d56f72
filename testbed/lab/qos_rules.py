"""The parts of a router template that tc cannot do on every kernel, done in iptables' mangle table
before the packet reaches the egress qdisc (POSTROUTING, which runs before NAT's source translation):

- **Classification by LAN source behind NAT.** The WAN queue sees packets after masquerading, when
  every LAN source is the router's WAN address, so a class that matches ``from:`` a LAN prefix would
  never match there. On such a side every IP class match becomes a ``CLASSIFY`` rule (HTB takes a
  packet whose priority names one of its classes before any filter), written in reverse template
  order so the first matching class is the last to set it: first match wins, as with the u32 filters.
- **Policed priority classes** (``police: true``; Cisco's ``priority percent N``): what a class sends
  above its rate is dropped before it is queued. tc's ``police`` action (act_police) is missing from
  some kernels (this CI's among them), so the policer is iptables' ``hashlimit`` in byte mode, which
  every kernel with netfilter has. Its burst cannot be below one second of its rate (hashlimit's own
  floor), where Cisco's default is 200 ms. Packets that an earlier class claims are left alone, so the
  policer sees exactly its class's traffic.

Pure rule generation (unit-tested) and one install through the lab's iptables.
"""

from __future__ import annotations

import ipaddress
import itertools

from testbed.lab import iptables
from testbed.lab.backends.base import Node
from testbed.lab.tools import run_tool
from testbed.scenario.router_template import ClassMatch, EgressPolicy, RouterTemplate, resolve_prefixes, resolve_share

__all__ = ["QOS_CHAIN", "install_qos_rules", "needs_prenat_classes", "qos_rules"]

QOS_CHAIN = "vtb-qos"


def needs_prenat_classes(template: RouterTemplate, side: str, policy: EgressPolicy) -> bool:
    """A WAN behind NAT whose classes match LAN sources: classify there before the translation."""
    return (
        side == "wan"
        and template.nat != "none"
        and any(match.from_ for traffic_class in policy.classes for match in traffic_class.match)
    )


def match_arguments(match: ClassMatch, media: ipaddress.IPv4Network | None) -> list[list[str]]:
    """iptables arguments for one class match: one alternative per DSCP x source x destination."""
    base = ["-p", match.protocol] if match.protocol else []
    if match.ports:
        base += ["-m", "multiport", "--ports", ",".join(p.replace("-", ":") for p in match.ports)]
    dscps = [["-m", "dscp", "--dscp", str(d)] for d in match.dscp] or [[]]
    sources = [["-s", str(p)] for p in resolve_prefixes(match.from_, media, "a class match")] or [[]]
    destinations = [["-d", str(p)] for p in resolve_prefixes(match.to, media, "a class match")] or [[]]
    return [base + d + s + t for d, s, t in itertools.product(dscps, sources, destinations)]


def qos_rules(
    template: RouterTemplate,
    sides: dict[str, str],
    classids: dict[str, list[str]],
    link_rates: dict[str, int],
    media: ipaddress.IPv4Network | None,
) -> str:
    """An iptables-restore input that (re)fills the router's QoS chain: classification before NAT and
    policers, per egress interface (``sides``: wan/lan -> interface; per interface the tc class ids of
    the template's classes in order, and the link rate)."""
    lines = ["*mangle", f":{QOS_CHAIN} - [0:0]"]
    for side, ifname in sides.items():
        policy: EgressPolicy | None = getattr(template, side, None)
        if policy is None:
            continue
        out = ["-o", ifname]
        classes = list(enumerate(policy.classes))
        if needs_prenat_classes(template, side, policy):
            for offset, traffic_class in reversed(classes):
                for match in traffic_class.match:
                    for args in match_arguments(match, media):
                        rule = out + args + ["-j", "CLASSIFY", "--set-class", classids[ifname][offset]]
                        lines.append(" ".join(["-A", QOS_CHAIN, *rule]))
        last_policed = max((i for i, c in classes if c.police), default=-1)
        for offset, traffic_class in classes[: last_policed + 1]:
            for match in traffic_class.match:
                for args in match_arguments(match, media):
                    if traffic_class.police:
                        rate = _police_bytes(traffic_class.rate, link_rates[ifname])
                        name = f"vtb-{ifname}-{offset}"[:15]
                        limit = ["-m", "hashlimit", "--hashlimit-above", f"{rate}b/s"]
                        burst = rate + rate // 100 + 1500  # hashlimit's floor (one second), rounded up as it does
                        limit += ["--hashlimit-burst", f"{burst}b", "--hashlimit-name", name]
                        lines.append(" ".join(["-A", QOS_CHAIN, *out, *args, *limit, "-j", "DROP"]))
                    lines.append(" ".join(["-A", QOS_CHAIN, *out, *args, "-j", "RETURN"]))  # claimed
    return "\n".join(lines + ["COMMIT", ""])


def _police_bytes(rate: str, link_rate: int) -> int:
    """The class's rate in bytes per second, as hashlimit counts (IP packets)."""
    return max(resolve_share(rate, link_rate) // 8, 1)


def install_qos_rules(node: Node, rules: str) -> None:
    """Fill the chain and hook it into mangle POSTROUTING once (a template change refills it)."""
    run_tool(node, [iptables.IPTABLES_RESTORE, "--noflush"], rules)
    current = run_tool(node, [iptables.IPTABLES_SAVE, "-t", "mangle"])
    if f"-A POSTROUTING -j {QOS_CHAIN}" not in current:
        run_tool(node, [iptables.IPTABLES, "-t", "mangle", "-A", "POSTROUTING", "-j", QOS_CHAIN])
