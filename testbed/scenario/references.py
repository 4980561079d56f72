"""Cross-checks between sections of a valid scenario: every name used is defined, and fits where used."""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from pydantic import ValidationError

from testbed.errors import ScenarioError
from testbed.scenario.addressing import plan_addresses
from testbed.scenario.model import CallSpec, RouterSpec, Scenario, Topology, TrafficSpec, TunnelSpec
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
        return (
            f"{doc.path}:{line}: {format_loc(loc)}: {message}" if line else f"{doc.path}: {format_loc(loc)}: {message}"
        )

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
                yield problem(
                    loc + ("addresses", node),
                    f"{node!r} is not an endpoint of link {link_name!r}{_suggest(node, link.endpoints)}",
                )
        if link.subnet is not None:
            if link.subnet.num_addresses - 2 < len(link.endpoints):
                yield problem(loc + ("subnet",), f"{link.subnet} is too small for {len(link.endpoints)} endpoints")
            for other_name, other in subnets:
                if link.subnet.overlaps(other):
                    yield problem(loc + ("subnet",), f"{link.subnet} overlaps the subnet of link {other_name!r}")
            subnets.append((link_name, link.subnet))
            for node, address in link.addresses.items():
                if address not in link.subnet or address in (
                    link.subnet.network_address,
                    link.subnet.broadcast_address,
                ):
                    yield problem(loc + ("addresses", node), f"{address} is not a host address of {link.subnet}")
        elif link.addresses:
            yield problem(loc + ("addresses",), "address overrides need the link's 'subnet' too")
        addresses = list(link.addresses.values())
        if len(set(addresses)) != len(addresses):
            yield problem(loc + ("addresses",), "two endpoints have the same address")
    for node_name in nodes:
        if node_name not in attached:
            yield problem(
                ("topology", "nodes", node_name), f"node {node_name!r} is on no link; add it to a link's endpoints"
            )

    # -- tunnels (as written, and as each variant changes them)
    yield from _check_tunnels(problem, topo, topo.tunnels, ("topology", "tunnels"))
    for name, variant in scenario.variants.items():
        if not variant.tunnels:
            continue
        merged = dict(topo.tunnels)
        for tunnel_name, changes in variant.tunnels.items():
            if tunnel_name not in topo.tunnels:
                yield problem(
                    ("variants", name, "tunnels", tunnel_name),
                    f"unknown tunnel {tunnel_name!r}"
                    f"{_suggest(tunnel_name, topo.tunnels)}; a variant changes tunnels of topology.tunnels",
                )
                continue
            try:
                merged[tunnel_name] = TunnelSpec.model_validate(
                    {**topo.tunnels[tunnel_name].model_dump(mode="json", exclude_unset=True), **changes}
                )
            except ValidationError:
                pass  # the variant's own validation (LoadedScenario.variant) reports it, located
        changed = {tunnel_name: merged[tunnel_name] for tunnel_name in variant.tunnels if tunnel_name in merged}
        yield from _check_tunnels(problem, topo, merged, ("variants", name, "tunnels"), only=set(changed))

    # -- link impairments (top level and per variant)
    def check_impairments(base: Loc, per_link: Mapping[str, Mapping[str, object]]) -> Iterator[str]:
        for link_name, directions in per_link.items():
            if link_name not in links:
                yield problem(base + (link_name,), f"unknown link {link_name!r}{_suggest(link_name, links)}")
                continue
            for sender in directions:
                if sender not in links[link_name].endpoints:
                    yield problem(
                        base + (link_name, sender),
                        f"{sender!r} is not an endpoint of link {link_name!r}"
                        f" (the keys name the sending end){_suggest(sender, links[link_name].endpoints)}",
                    )

    yield from check_impairments(("links",), scenario.links)

    # -- router
    routers = [name for name, node in nodes.items() if node.kind == "router"]

    def check_router(loc: Loc, router: RouterSpec | None) -> Iterator[str]:
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
            yield problem(
                loc + ("template",),
                f"router template {router.template!r} not found{_suggest(router.template, templates_available)}",
            )

    yield from check_router(("router",), scenario.router)
    for name, variant in scenario.variants.items():
        yield from check_router(("variants", name, "router"), variant.router)
        if variant.links:
            yield from check_impairments(("variants", name, "links"), variant.links)

    # -- workload
    hosts = [name for name, node in nodes.items() if node.kind == "host"]

    def check_endpoints(section: str, index: int, item: CallSpec | TrafficSpec, what: str) -> Iterator[str]:
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
            yield problem(
                loc + ("traffic",), f"unknown traffic {event.traffic!r}{_suggest(event.traffic, traffic_names)}"
            )
        if event.link is not None and event.impairments is not None:
            yield from check_impairments(loc, {event.link: event.impairments})
        if event.node is not None and event.node not in scenario.topology.nodes:
            names = list(scenario.topology.nodes)
            yield problem(loc + ("node",), f"unknown node {event.node!r}{_suggest(event.node, names)}")
        if event.template is not None and find_template(event.template) is None:
            yield problem(
                loc + ("template",),
                f"router template {event.template!r} not found{_suggest(event.template, templates_available)}",
            )

    # -- the cloud edge: TURN and signalling nodes, the media prefix, calls' ICE
    yield from _check_edge(problem, scenario, hosts)

    # -- thresholds
    variant_names = list(scenario.variants) or ["default"]
    for index, rule in enumerate(scenario.thresholds):
        for field in ("variant", "over"):
            name = getattr(rule, field)
            if name is not None and name not in variant_names:
                yield problem(("thresholds", index, field), f"unknown variant {name!r}{_suggest(name, variant_names)}")
        if rule.call is not None and rule.call not in call_names:
            yield problem(("thresholds", index, "call"), f"unknown call {rule.call!r}{_suggest(rule.call, call_names)}")


def _check_edge(problem: Callable[[Loc, str], str], scenario: Scenario, hosts: list[str]) -> Iterator[str]:
    edge = scenario.edge
    for part in ("turn", "signalling"):
        spec = getattr(edge, part)
        if spec is not None and spec.node not in hosts:
            why = "a router; it must be a host" if spec.node in scenario.topology.nodes else "not a node"
            yield problem(("edge", part, "node"), f"{spec.node!r} is {why}{_suggest(spec.node, hosts)}")
    if edge.media_prefix is not None and edge.turn is not None and edge.turn.node in hosts:
        try:
            plan = plan_addresses(scenario.topology)
        except (ValueError, LookupError):
            return  # a broken topology (an unknown node, a subnet too small): its own checks report it
        addresses = [i.address.ip for i in plan.interfaces if i.node == edge.turn.node]
        if not any(address in edge.media_prefix for address in addresses):
            yield problem(
                ("edge", "media_prefix"),
                f"the TURN server's node {edge.turn.node!r} has no address in the media prefix {edge.media_prefix} "
                f"(it has {', '.join(map(str, addresses)) or 'none'}); give its link that subnet",
            )
    for index, call in enumerate(scenario.calls):
        if (call.ice.turn or call.ice.stun) and edge.turn is None:
            yield problem(
                ("calls", index, "ice"), "the call asks for TURN/STUN but the scenario has no edge.turn server"
            )


# interface names the kernel creates by itself in every namespace once a tunnel module is loaded
_KERNEL_TUNNEL_DEVICES = {"lo", "gre0", "gretap0", "erspan0", "tunl0", "sit0", "ip6tnl0", "ip6gre0"}


def _check_tunnels(
    problem: Callable[[Loc, str], str],
    topo: Topology,
    tunnels: dict[str, TunnelSpec],
    base: Loc,
    only: set[str] | None = None,
) -> Iterator[str]:
    """Tunnel endpoints and route targets are nodes; names, subnets and routes do not collide.

    ``only``: report just these tunnels (a variant's), still checked against all the others."""
    nodes = topo.nodes
    link_subnets = _link_subnets(topo)
    routed: dict[tuple[str, str], str] = {}  # (first endpoint, target) -> tunnel
    pairs: dict[frozenset[str], str] = {}  # GRE tunnels between the same two nodes clash in the kernel
    for tunnel_name, tunnel in tunnels.items():
        report = only is None or tunnel_name in only
        loc: Loc = base + (tunnel_name,)
        problems: list[str] = []
        if tunnel_name in topo.links or tunnel_name in _KERNEL_TUNNEL_DEVICES:
            what = f"link {tunnel_name!r}" if tunnel_name in topo.links else "a device the kernel creates itself"
            problems.append(
                problem(
                    loc,
                    f"tunnel {tunnel_name!r} has the name of {what} (the name becomes the "
                    "tunnel's interface name); give it another name",
                )
            )
        for index, endpoint in enumerate(tunnel.endpoints):
            if endpoint not in nodes:
                problems.append(
                    problem(loc + ("endpoints", index), f"unknown node {endpoint!r}{_suggest(endpoint, nodes)}")
                )
        for index, target in enumerate(tunnel.routes):
            if target not in nodes:
                problems.append(problem(loc + ("routes", index), f"unknown node {target!r}{_suggest(target, nodes)}"))
            elif target in tunnel.endpoints:
                problems.append(
                    problem(
                        loc + ("routes", index),
                        f"{target!r} is an endpoint of tunnel {tunnel_name!r};"
                        " routes name the nodes behind the concentrator",
                    )
                )
            else:
                key = (tunnel.endpoints[0], target)
                if key in routed:
                    problems.append(
                        problem(
                            loc + ("routes", index),
                            f"{tunnel.endpoints[0]!r} already reaches {target!r} through tunnel {routed[key]!r}",
                        )
                    )
                routed[key] = tunnel_name
        if tunnel.kind == "gre":
            pair = frozenset(tunnel.endpoints)
            if pair in pairs:
                problems.append(
                    problem(
                        loc + ("endpoints",),
                        f"GRE tunnel {pairs[pair]!r} already joins these two "
                        "nodes (the kernel allows one); use kind: vxlan for a second tunnel",
                    )
                )
            pairs[pair] = tunnel_name
        if tunnel.subnet is not None:
            others = [(f"link {name!r}", subnet) for name, subnet in link_subnets.items()]
            # each pair of tunnels once (the later one is reported), but a variant's against all others
            names = list(tunnels)
            compared = names if only is not None else names[: names.index(tunnel_name)]
            others += [
                (f"tunnel {name!r}", subnet)
                for name in compared
                if name != tunnel_name and (subnet := tunnels[name].subnet) is not None
            ]
            for what, other in others:
                if tunnel.subnet.overlaps(other):
                    problems.append(problem(loc + ("subnet",), f"{tunnel.subnet} overlaps {other} of {what}"))
        if report:
            yield from problems


def _link_subnets(topo: Topology) -> dict[str, ipaddress.IPv4Network]:
    """Every link's subnet as the address plan gives it; only the fixed ones if no plan can be made."""
    try:
        return {name: segment.subnet for name, segment in plan_addresses(topo).segments.items()}
    except (ScenarioError, KeyError):  # the plan's own problems are reported where the plan is checked
        return {name: link.subnet for name, link in topo.links.items() if link.subnet is not None}
