"""Router templates on a real router: HTB classes fed by u32 DSCP/protocol/port filters, DSCP handling
on ingress, or the user's own tc script.

Egress layout on each router side (WAN = upstream, LAN = downstream)::

    root 1: htb default <default class>
      class 1:1   rate = ceil = the link rate (the router end's `rate`, else line rate)
        class 1:10, 1:11, ...   one per template class, in template order (prio, rate, ceil)
          leaf 10:, 11:, ...    pfifo with the class's queue limit, or netem when the link needs it

Filters are u32 on the root, tried in template order (the first matching class wins); packets no
filter matches go to the default class. Port matches assume a 20-byte IPv4 header, as tc's own
``match ip dport`` does; packets with IP options fall to the default class. ARP and ICMPv6 (neighbour
discovery) go to the template's control class: behind a full bulk queue they starve, the router's
neighbour entry fails and it drops the EF packets queued behind it for seconds (docs/design.md, "ARP and
ND go into the control class").

Ingress DSCP rewriting (bleach, remark) is an iptables mangle chain in the router's namespace, written
with the lab's one iptables through ``Node.run``, as are tc-script commands; everything here lives in
the router's namespace and disappears with it.
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass, field

from pyroute2 import IPRoute

from testbed import units
from testbed.errors import InputError
from testbed.lab import impair, police, qos_rules, sqm, tc_script
from testbed.lab.backends.base import Node
from testbed.lab.edge import install_edge
from testbed.scenario.model import Impairment, Scenario
from testbed.scenario.router_template import (
    EgressPolicy,
    RouterTemplate,
    TrafficClass,
    resolve_prefixes,
    resolve_share,
)

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17}
ROOT = 0x10000  # 1:
PARENT = 0x10001  # 1:1
FIRST_MINOR = 0x10
ARP_FILTER_PRIO = 1  # one protocol per filter priority: the kernel refuses to mix them
ICMPV6_FILTER_PRIO = 2
FIRST_CLASS_FILTER_PRIO = 10

# u32 keys, "value/mask+offset" from the start of the IPv4 header (pyroute2 packs them into words)
IHL_5 = "0x5/0xf+0"
ICMPV6 = "0x3a/0xff+6"  # IPv6 next header 58
MATCH_ALL = "0x0/0x0+0"
SOURCE_PORT_OFFSET = 20
DESTINATION_PORT_OFFSET = 22
SOURCE_ADDRESS_OFFSET = 12
DESTINATION_ADDRESS_OFFSET = 16


def dscp_key(dscp: int) -> str:
    return f"0x{dscp << 2:02x}/0xfc+1"  # the DSCP is the TOS byte's upper six bits


def protocol_key(protocol: str) -> str:
    return f"0x{PROTOCOL_NUMBERS[protocol]:02x}/0xff+9"


def port_blocks(low: int, high: int) -> list[tuple[int, int]]:
    """Cover ``low..high`` with (value, mask) prefix blocks, as u32 can only match masked values."""
    blocks = []
    while low <= high:
        size = low & -low if low else 1 << 16
        while size > high - low + 1:
            size >>= 1
        blocks.append((low, 0xFFFF & ~(size - 1)))
        low += size
    return blocks


def prefix_key(prefix: ipaddress.IPv4Network, offset: int) -> str:
    return f"0x{int(prefix.network_address):08x}/0x{int(prefix.netmask):08x}+{offset}"


def _port_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


@dataclass(frozen=True)
class ClassPlan:
    name: str
    classid: int
    leaf: int
    rate: int
    ceil: int
    priority: int
    queue_limit: int
    queue: str = "pfifo"  # or fq_codel
    police_rate: int | None = None  # a policed class: what goes above this (bit/s) is dropped


@dataclass(frozen=True)
class FilterPlan:
    prio: int
    protocol: int
    keys: tuple[str, ...]
    target: int
    what: str


@dataclass(frozen=True)
class EgressPlan:
    link_rate: int
    classes: list[ClassPlan]
    filters: list[FilterPlan]
    default_minor: int

    def class_names(self) -> dict[str, str]:
        """tc handle -> class name, for the queue statistics."""
        names = {impair.handle_text(PARENT): "link"}
        names.update({impair.handle_text(c.classid): c.name for c in self.classes})
        return names


def _class_filters(
    traffic_class: TrafficClass, classid: int, prio: int, media: ipaddress.IPv4Network | None = None
) -> list[FilterPlan]:
    filters = []
    for match in traffic_class.match:
        where = f"router class {traffic_class.name!r}"
        destinations = [[prefix_key(p, DESTINATION_ADDRESS_OFFSET)] for p in resolve_prefixes(match.to, media, where)]
        sources = [[prefix_key(p, SOURCE_ADDRESS_OFFSET)] for p in resolve_prefixes(match.from_, media, where)]
        base = [protocol_key(match.protocol)] if match.protocol else []
        port_keys: list[list[str]] = [[]]
        if match.ports:
            port_keys = [
                [IHL_5, f"0x{value:04x}/0x{mask:04x}+{offset}"]
                for text in match.ports
                for value, mask in port_blocks(*_port_range(text))
                for offset in (SOURCE_PORT_OFFSET, DESTINATION_PORT_OFFSET)
            ]
        dscp_keys: list[list[str]] = [[dscp_key(d)] for d in match.dscp] or [[]]
        what = f"{traffic_class.name}: {match.model_dump(exclude_defaults=True, by_alias=True, mode='json')}"
        for dscp, ports, source, destination in itertools.product(
            dscp_keys, port_keys, sources or [[]], destinations or [[]]
        ):
            filters.append(FilterPlan(prio, ETH_P_IP, tuple(dscp + base + source + destination + ports), classid, what))
        prio += 1
    return filters


def control_class_name(template: RouterTemplate, policy: EgressPolicy) -> str | None:
    if template.control_class == "none":
        return None
    if template.control_class:
        return template.control_class
    return min(policy.classes, key=lambda c: c.priority).name  # min() keeps the first of equals


def plan_egress(
    template: RouterTemplate,
    policy: EgressPolicy,
    link_rate: int,
    link_queue_limit: int | None = None,
    media: ipaddress.IPv4Network | None = None,
    before_nat: bool = False,
) -> EgressPlan:
    """The HTB tree and filters for one router side (pure; unit-tested). ``before_nat``: the side's IP
    classification is iptables' (``qos_rules``: it sees LAN sources before NAT), so no u32 IP filters.
    A policed class is served first up to the link rate; its policer holds it to its rate."""
    classes: list[ClassPlan] = []
    filters: list[FilterPlan] = []
    prio = FIRST_CLASS_FILTER_PRIO
    for offset, traffic_class in enumerate(policy.classes):
        minor = FIRST_MINOR + offset
        rate = resolve_share(traffic_class.rate, link_rate)
        ceil = link_rate if traffic_class.police else min(resolve_share(traffic_class.ceil, link_rate), link_rate)
        if rate > link_rate:
            raise InputError(
                f"router class {traffic_class.name!r}: rate {units.format_rate(rate)} is above the "
                f"link rate {units.format_rate(link_rate)}"
            )
        limit = traffic_class.queue_limit or policy.queue_limit or link_queue_limit or impair.DEFAULT_QUEUE_LIMIT
        plan = ClassPlan(
            traffic_class.name,
            ROOT | minor,
            minor << 16,
            rate,
            max(ceil, rate),
            traffic_class.priority,
            limit,
            traffic_class.leaf,
            rate if traffic_class.police else None,
        )
        classes.append(plan)
        class_filters = _class_filters(traffic_class, plan.classid, prio, media)
        filters += [] if before_nat else class_filters
        prio = max([prio - 1, *(f.prio for f in class_filters)]) + 1
    guaranteed = sum(c.rate for c in classes)
    if guaranteed > link_rate * 1.001:
        raise InputError(
            f"router classes guarantee {units.format_rate(guaranteed)} on a "
            f"{units.format_rate(link_rate)} link; lower their rates"
        )
    default = next(c for c, tc in zip(classes, policy.classes, strict=False) if tc.default)
    control = control_class_name(template, policy)
    if control is not None:
        target = next(c.classid for c in classes if c.name == control)
        filters = [
            FilterPlan(ARP_FILTER_PRIO, ETH_P_ARP, (MATCH_ALL,), target, f"{control}: ARP"),
            FilterPlan(ICMPV6_FILTER_PRIO, ETH_P_IPV6, (ICMPV6,), target, f"{control}: ICMPv6 (ND)"),
            *filters,
        ]
    return EgressPlan(link_rate, classes, filters, default.classid & 0xFFFF)


def install_egress(
    ipr: IPRoute,
    node: Node,
    ifname: str,
    plan: EgressPlan,
    impairment: Impairment,
    burst: int | None = None,
    skip: frozenset[int] = frozenset(),
) -> None:
    """Replace the interface's egress with the planned tree; the link's netem settings go in every leaf.
    Filters into the ``skip`` classes are left to the caller (tc's policer)."""
    index = ipr.link_lookup(ifname=ifname)[0]
    impair.clear_root(ipr, ifname)
    ipr.tc("add", "htb", index, ROOT, default=plan.default_minor)
    link_burst = burst or impair.burst_bytes(plan.link_rate)
    ipr.tc(
        "add-class",
        "htb",
        index,
        PARENT,
        parent=ROOT,
        rate=f"{plan.link_rate}bit",
        ceil=f"{plan.link_rate}bit",
        burst=link_burst,
        cburst=link_burst,
    )
    for traffic_class in plan.classes:
        class_burst = burst or impair.burst_bytes(traffic_class.ceil)
        ipr.tc(
            "add-class",
            "htb",
            index,
            traffic_class.classid,
            parent=PARENT,
            rate=f"{traffic_class.rate}bit",
            ceil=f"{traffic_class.ceil}bit",
            burst=class_burst,
            cburst=class_burst,
            prio=traffic_class.priority,
        )
        if traffic_class.queue == "fq_codel":
            sqm.install_fq_codel_leaf(ipr, ifname, traffic_class.classid, traffic_class.leaf, impairment)
        else:
            impair.install_leaf(
                ipr, node, ifname, traffic_class.classid, traffic_class.leaf, impairment, traffic_class.queue_limit
            )
    install_filters(ipr, index, [rule for rule in plan.filters if rule.target not in skip])


def install_filters(ipr: IPRoute, index: int, filters: list[FilterPlan]) -> None:
    for rule in filters:
        ipr.tc(
            "add-filter",
            "u32",
            index,
            parent=ROOT,
            prio=rule.prio,
            protocol=rule.protocol,
            target=rule.target,
            keys=list(rule.keys),
        )


def install_policers(ipr: IPRoute, node: Node, ifname: str, plan: EgressPlan, side_number: int) -> bool:
    """Policed classes' filters with tc's police action; where the kernel has none, plain filters and
    False (iptables' hashlimit polices instead)."""
    policed = [c for c in plan.classes if c.police_rate]
    targets = {c.classid for c in policed}
    commands = []
    for c in policed:
        filters = [f for f in plan.filters if f.target == c.classid]
        index = side_number * 256 + (c.classid & 0xFF)  # one shared action per class and side
        commands += police.police_filter_commands(ifname, filters, c.police_rate or 0, index)
    if not commands or police.install_tc_policers(node, commands):
        return True
    install_filters(ipr, ipr.link_lookup(ifname=ifname)[0], [f for f in plan.filters if f.target in targets])
    return False


# ---------------------------------------------------------------- the whole router


def find_router(scenario: Scenario) -> tuple[str, dict[str, str]] | None:
    """The router node that runs the template and its side -> link name (links name the interfaces)."""
    routers = [name for name, node in scenario.topology.nodes.items() if node.kind == "router"]
    node = scenario.router.node or (routers[0] if len(routers) == 1 else None)
    if node is None:
        return None
    sides = {}
    for side in ("wan", "lan"):
        link = getattr(scenario.router, side) or side
        if link in scenario.topology.links and node in scenario.topology.links[link].endpoints:
            sides[side] = link
    return node, sides


@dataclass
class RouterSides:
    """Where the template goes: the router node and its WAN / LAN interface names."""

    node: Node
    sides: dict[str, str] = field(default_factory=dict)  # "wan"/"lan" -> interface name
    media_prefix: ipaddress.IPv4Network | None = None  # what firewall rules' ``to: media`` means


def apply_router(
    ipr: IPRoute, router: RouterSides, template: RouterTemplate, impairments: dict[str, Impairment]
) -> dict[str, dict[str, str]]:
    """Install ``template`` on the router (replacing the previous one). ``impairments`` holds the router's
    own link settings per interface. Returns interface -> {tc handle: class name}."""
    names: dict[str, dict[str, str]] = {}
    interfaces = list(router.sides.values())
    if template.kind in ("tc-script", "sqm"):
        for ifname in router.sides.values():
            if impairments.get(ifname, Impairment()).needs_netem():
                raise InputError(
                    f"with a {template.kind} template the router's egress on {ifname} is the template's: "
                    f"put delay/loss on the other end of link {ifname!r}"
                    + (", or into the script" if template.kind == "tc-script" else "")
                )
            impair.clear_root(ipr, ifname)
    if template.kind == "sqm" and template.sqm is not None:
        shaped = {i: rate for i in router.sides.values() if (rate := impairments.get(i, Impairment()).rate)}
        if not shaped:
            raise InputError(
                f"the router template's sqm ({template.sqm.qdisc}) shapes to the router's link rates, but no "
                f"end of the router's links ({', '.join(router.sides.values())}) has a rate: give the WAN one"
            )
        for ifname in router.sides.values():
            if ifname in shaped:
                names[ifname] = sqm.install_sqm(ipr, router.node, ifname, template.sqm, shaped[ifname])
            else:
                impair.apply(ipr, router.node, ifname, impairments.get(ifname, Impairment()))
    elif template.kind == "tc-script":
        rates = {
            f"{side}_rate": (f"{impairments[i].rate}bit" if i in impairments and impairments[i].rate else None)
            for side, i in router.sides.items()
        }
        tc_script.run_script(router.node, template, {**router.sides, **rates})
    classids: dict[str, list[str]] = {}
    link_rates: dict[str, int] = {}
    hashlimit_sides: set[str] = set()  # interfaces whose policed classes iptables polices
    if template.kind == "classes":
        for side, ifname in router.sides.items():
            impairment = impairments.get(ifname, Impairment())
            policy: EgressPolicy | None = getattr(template, side)
            if policy is None:
                impair.apply(ipr, router.node, ifname, impairment)
                continue
            link_rates[ifname] = impairment.rate or impair.LINE_RATE
            before_nat = qos_rules.needs_prenat_classes(template, side, policy)
            plan = plan_egress(
                template, policy, link_rates[ifname], impairment.queue_limit, router.media_prefix, before_nat
            )
            policed = frozenset(c.classid for c in plan.classes if c.police_rate and not before_nat)
            burst = template.burst or impairment.burst
            install_egress(ipr, router.node, ifname, plan, impairment, burst, policed)
            if before_nat or not install_policers(ipr, router.node, ifname, plan, len(classids) + 1):
                hashlimit_sides.add(ifname)
            names[ifname] = plan.class_names()
            classids[ifname] = [impair.handle_text(c.classid) for c in plan.classes]
    rules = qos_rules.qos_rules(template, router.sides, classids, link_rates, router.media_prefix, hashlimit_sides)
    qos_rules.install_qos_rules(router.node, rules)  # refilled empty for a template without such classes
    qos_rules.install_ingress_dscp(router.node, template, interfaces)
    install_edge(router.node, template, router.sides, router.media_prefix)
    return names
