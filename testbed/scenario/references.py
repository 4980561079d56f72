"""Cross-checks between sections of a valid scenario: every name used is defined, and fits where used."""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from testbed.scenario.model import Impairment, Scenario
from testbed.scenario.yamlsource import YamlDocument, format_loc

Loc = tuple[str | int, ...]


def _suggest(name: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    listing = f" (known: {', '.join(known)})" if known else ""
    return (f"; did you mean {close[0]!r}?" if close else "") + listing


def check_references(
    scenario: Scenario,
    doc: YamlDocument,
    find_template: Callable[[str], Path | None],
    templates_available: list[str],
) -> Iterator[str]:
    """Yield one located message per broken reference; nothing when the scenario is consistent."""
    def problem(loc: Loc, message: str) -> str:
        line = doc.line_of(loc)
        return f"{doc.path}:{line}: {format_loc(loc)}: {message}" if line else f"{doc.path}: {format_loc(loc)}: {message}"

    topo = scenario.topology
    nodes = topo.nodes
    links = topo.links
    attached: set[str] = set()

    # -- topology
    subnets: list[tuple[str, ipaddress.IPv4Network]] = []
    for link_name, link in links.items():
        loc: Loc = ("topology", "links", link_name)
        if link_name in nodes:
            yield problem(loc, f"link {link_name!r} has the name of a node; give it another name")
        if link_name == "lo":
            yield problem(loc, "'lo' is the loopback interface of every node; give the link another name")
        seen: set[str] = set()
        for index, endpoint in enumerate(link.endpoints):
            if endpoint not in nodes:
                yield problem(loc + ("endpoints", index), f"unknown node {endpoint!r}{_suggest(endpoint, nodes)}")
            if endpoint in seen:
                yield problem(loc + ("endpoints", index), f"node {endpoint!r} is listed twice in link {link_name!r}")
            seen.add(endpoint)
            attached.add(endpoint)
        for node in link.addresses:
            if node not in link.endpoints:
                yield problem(loc + ("addresses", node), f"{node!r} is not an endpoint of link {link_name!r}"
                              f"{_suggest(node, link.endpoints)}")
        if link.subnet is not None:
            if link.subnet.num_addresses - 2 < len(link.endpoints):
                yield problem(loc + ("subnet",), f"{link.subnet} is too small for {len(link.endpoints)} endpoints")
            for other_name, other in subnets:
                if link.subnet.overlaps(other):
                    yield problem(loc + ("subnet",), f"{link.subnet} overlaps the subnet of link {other_name!r}")
            subnets.append((link_name, link.subnet))
            for node, address in link.addresses.items():
                if address not in link.subnet or address in (link.subnet.network_address,
                                                             link.subnet.broadcast_address):
                    yield problem(loc + ("addresses", node), f"{address} is not a host address of {link.subnet}")
        elif link.addresses:
            yield problem(loc + ("addresses",), "address overrides need the link's 'subnet' too")
        addresses = list(link.addresses.values())
        if len(set(addresses)) != len(addresses):
            yield problem(loc + ("addresses",), "two endpoints have the same address")
    for node_name in nodes:
        if node_name not in attached:
            yield problem(("topology", "nodes", node_name), f"node {node_name!r} is on no link; add it to a link's endpoints")

    # -- link impairments (top level and per variant)
    def check_impairments(base: Loc, per_link: dict[str, dict[str, Impairment]]) -> Iterator[str]:
        for link_name, directions in per_link.items():
            if link_name not in links:
                yield problem(base + (link_name,), f"unknown link {link_name!r}{_suggest(link_name, links)}")
                continue
            for sender in directions:
                if sender not in links[link_name].endpoints:
                    yield problem(base + (link_name, sender), f"{sender!r} is not an endpoint of link {link_name!r}"
                                  f" (the keys name the sending end){_suggest(sender, links[link_name].endpoints)}")

    yield from check_impairments(("links",), scenario.links)

    # -- router
    routers = [name for name, node in nodes.items() if node.kind == "router"]

    def check_router(loc: Loc, router) -> Iterator[str]:
        if router is None:
            return
        router_node = router.node
        if router_node is not None and router_node not in routers:
            what = "not a node" if router_node not in nodes else "not of kind router"
            yield problem(loc + ("node",), f"{router_node!r} is {what}{_suggest(router_node, routers)}")
        elif router_node is None and len(routers) > 1:
            yield problem(loc + ("node",), f"several routers ({', '.join(routers)}); say which one runs the template")
        router_node = router_node or (routers[0] if routers else None)
        for side in ("wan", "lan"):
            link_name = getattr(router, side)
            if link_name is None:
                continue
            if link_name not in links:
                yield problem(loc + (side,), f"unknown link {link_name!r}{_suggest(link_name, links)}")
            elif router_node not in links[link_name].endpoints:
                yield problem(loc + (side,), f"link {link_name!r} does not reach router {router_node!r}")
        if router.template and find_template(router.template) is None:
            yield problem(loc + ("template",), f"router template {router.template!r} not found"
                          f"{_suggest(router.template, templates_available)}")

    yield from check_router(("router",), scenario.router)
    for name, variant in scenario.variants.items():
        yield from check_router(("variants", name, "router"), variant.router)
        if variant.links:
            yield from check_impairments(("variants", name, "links"), variant.links)

    # -- workload
    hosts = [name for name, node in nodes.items() if node.kind == "host"]

    def check_endpoints(section: str, index: int, item, what: str) -> Iterator[str]:
        for field, alias in (("from_", "from"), ("to", "to")):
            node = getattr(item, field)
            if node not in hosts:
                why = f"a router; {what} run between hosts" if node in nodes else "not a node"
                yield problem((section, index, alias), f"{node!r} is {why}{_suggest(node, hosts)}")
        if item.from_ == item.to:
            yield problem((section, index), f"{what} need two different nodes")

    call_names: list[str] = []
    for index, call in enumerate(scenario.calls):
        yield from check_endpoints("calls", index, call, "calls")
        name = call.name or f"call-{index + 1}"
        if name in call_names:
            yield problem(("calls", index, "name"), f"duplicate call name {name!r}")
        call_names.append(name)
    traffic_names: list[str] = []
    for index, flow in enumerate(scenario.traffic):
        yield from check_endpoints("traffic", index, flow, "flows")
        if flow.name in traffic_names:
            yield problem(("traffic", index, "name"), f"duplicate traffic name {flow.name!r}")
        traffic_names.append(flow.name)
    for index, event in enumerate(scenario.timeline):
        loc = ("timeline", index)
        if event.traffic is not None and event.traffic not in traffic_names:
            yield problem(loc + ("traffic",), f"unknown traffic {event.traffic!r}{_suggest(event.traffic, traffic_names)}")
        if event.link is not None and event.impairments is not None:
            yield from check_impairments(loc, {event.link: event.impairments})
        if event.template is not None and find_template(event.template) is None:
            yield problem(loc + ("template",), f"router template {event.template!r} not found"
                          f"{_suggest(event.template, templates_available)}")

    # -- thresholds
    variant_names = list(scenario.variants) or ["default"]
    for index, rule in enumerate(scenario.thresholds):
        for field in ("variant", "over"):
            name = getattr(rule, field)
            if name is not None and name not in variant_names:
                yield problem(("thresholds", index, field), f"unknown variant {name!r}{_suggest(name, variant_names)}")
        if rule.call is not None and rule.call not in call_names:
            yield problem(("thresholds", index, "call"), f"unknown call {rule.call!r}{_suggest(rule.call, call_names)}")
