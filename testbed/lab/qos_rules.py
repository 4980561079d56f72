"""The parts of a router template done in iptables' mangle table. Ingress DSCP handling (bleach or
remark in PREROUTING, chain ``vtb-dscp``), and what tc cannot do on every kernel, before the packet
reaches the egress qdisc (POSTROUTING, which runs before NAT's source translation; chain ``vtb-qos``):

- **Classification by LAN source behind NAT.** The WAN queue sees packets after masquerading, when
  every LAN source is the router's WAN address, so a class that matches ``from:`` a LAN prefix would
  never match there. On such a side every IP class match becomes a ``CLASSIFY`` rule (HTB takes a
  packet whose priority names one of its classes before any filter), written in reverse template
  order so the first matching class is the last to set it: first match wins, as with the u32 filters.
- **Policed priority classes** (``police: true``; Cisco's ``priority percent N``) where the kernel has
  no tc ``police`` action (act_police: missing from this CI's kernel; ``testbed.lab.police`` uses it
  where it is there) or the side is classified before NAT: what a class sends above its rate is
  dropped before it is queued, by iptables' ``hashlimit`` in byte mode, which every kernel with
  netfilter has. Its burst cannot be below one second of its rate (hashlimit's own floor), where
  Cisco's default is 200 ms. Packets that an earlier class claims are left alone, so the policer sees
  exactly its class's traffic.

Pure rule generation (unit-tested) and one install through the lab's iptables.
"""

from __future__ import annotations

import ipaddress
import itertools

from testbed.lab import iptables
from testbed.lab.backends.base import Node
from testbed.lab.tools import run_tool
from testbed.scenario.router_template import ClassMatch, EgressPolicy, RouterTemplate, resolve_prefixes, resolve_share

__all__ = [
    "DSCP_CHAIN",
    "QOS_CHAIN",
    "dscp_rules",
    "install_ingress_dscp",
    "install_qos_rules",
    "needs_prenat_classes",
    "qos_rules",
]

QOS_CHAIN = "vtb-qos"
DSCP_CHAIN = "vtb-dscp"


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
    police_here: set[str] | None = None,
) -> str:
    """An iptables-restore input that (re)fills the router's QoS chain: classification before NAT and
    policers, per egress interface (``sides``: wan/lan -> interface; per interface the tc class ids of
    the template's classes in order, and the link rate; ``police_here``: the interfaces whose policed
    classes iptables polices, where tc's policer is missing; default all)."""
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
        policing = police_here is None or ifname in police_here
        last_policed = max((i for i, c in classes if c.police), default=-1) if policing else -1
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
    """Fill the chain and hook it into mangle POSTROUTING once (a template change refills it). A template
    without such rules writes none; one that follows a template with them empties the chain."""
    if "\n-A " not in rules:
        node.run([iptables.IPTABLES, "-t", "mangle", "-F", QOS_CHAIN])  # fails harmlessly where there is none
        return
    _fill_chain(node, rules, "POSTROUTING", QOS_CHAIN)


def dscp_rules(template: RouterTemplate, interfaces: list[str]) -> str:
    """An iptables-restore input that (re)fills the router's DSCP chain (pure; unit-tested)."""
    lines = ["*mangle", f":{DSCP_CHAIN} - [0:0]"]
    for ifname in interfaces:
        if template.ingress_dscp == "bleach":
            lines.append(f"-A {DSCP_CHAIN} -i {ifname} -j DSCP --set-dscp 0")
        elif template.ingress_dscp == "remark":
            lines += [
                f"-A {DSCP_CHAIN} -i {ifname} -m dscp --dscp {r.from_} -j DSCP --set-dscp {r.to}"
                f" -m comment --comment remark"
                for r in template.remark
            ]
    return "\n".join(lines + ["COMMIT", ""])


def install_ingress_dscp(node: Node, template: RouterTemplate, interfaces: list[str]) -> None:
    """Bleach or remark DSCP of packets arriving on the router's WAN and LAN; trust leaves them alone."""
    _fill_chain(node, dscp_rules(template, interfaces), "PREROUTING", DSCP_CHAIN)


def _fill_chain(node: Node, rules: str, hook: str, chain: str) -> None:
    """(Re)fill one of our mangle chains and jump to it from the built-in ``hook`` chain, once."""
    run_tool(node, [iptables.IPTABLES_RESTORE, "--noflush"], rules)
    if f"-A {hook} -j {chain}" not in run_tool(node, [iptables.IPTABLES_SAVE, "-t", "mangle"]):
        run_tool(node, [iptables.IPTABLES, "-t", "mangle", "-A", hook, "-j", chain])
