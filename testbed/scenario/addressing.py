"""The address plan: subnets, interface addresses and routes derived from a scenario's topology.

Pure computation, no kernel calls, so the plan can be printed, tested and stored with a run.
Routes are per destination subnet along the shortest path through router nodes (hosts never forward),
so any tree or mesh of routers works, not only client-router-gateway.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from testbed.errors import ScenarioError
from testbed.scenario.model import Topology


@dataclass(frozen=True)
class Interface:
    node: str
    link: str
    ifname: str
    address: ipaddress.IPv4Interface
    mtu: int


@dataclass(frozen=True)
class Route:
    node: str
    destination: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    ifname: str


@dataclass(frozen=True)
class Segment:
    """One topology link: a veth pair, or a bridge in a switch node when it has more than two endpoints."""

    name: str
    subnet: ipaddress.IPv4Network
    endpoints: tuple[str, ...]
    mtu: int

    @property
    def switched(self) -> bool:
        return len(self.endpoints) > 2


@dataclass(frozen=True)
class AddressPlan:
    nodes: dict[str, str]  # node -> kind
    segments: dict[str, Segment]
    interfaces: list[Interface]
    routes: list[Route] = field(default_factory=list)

    def interface(self, node: str, link: str) -> Interface:
        for interface in self.interfaces:
            if interface.node == node and interface.link == link:
                return interface
        raise KeyError(f"node {node!r} has no interface on link {link!r}")

    def address(self, node: str, link: str | None = None) -> ipaddress.IPv4Address:
        """The node's address on ``link``, or on its first link."""
        for interface in self.interfaces:
            if interface.node == node and (link is None or interface.link == link):
                return interface.address.ip
        raise KeyError(f"node {node!r} has no address" + (f" on link {link!r}" if link else ""))

    def node_interfaces(self, node: str) -> list[Interface]:
        return [i for i in self.interfaces if i.node == node]

    def node_routes(self, node: str) -> list[Route]:
        return [r for r in self.routes if r.node == node]


def free_subnets(
    pool: ipaddress.IPv4Network, prefix: int, taken: Iterable[ipaddress.IPv4Network]
) -> Iterator[ipaddress.IPv4Network]:
    """The subnets of ``pool`` of length ``prefix`` (at least the pool's own) that overlap none of
    ``taken``, in address order. Links take them one after the other; a tunnel takes the first one left."""
    taken = list(taken)
    for candidate in pool.subnets(new_prefix=max(prefix, pool.prefixlen)):
        if not any(candidate.overlaps(other) for other in taken):
            yield candidate


def _allocate_subnets(topology: Topology) -> dict[str, ipaddress.IPv4Network]:
    fixed = [link.subnet for link in topology.links.values() if link.subnet is not None]
    free = free_subnets(topology.address_pool, topology.subnet_prefix, fixed)
    result: dict[str, ipaddress.IPv4Network] = {}
    for name, link in topology.links.items():
        if link.subnet is not None:
            result[name] = link.subnet
            continue
        candidate = next(free, None)
        if candidate is None:
            raise ScenarioError([f"topology.address_pool {topology.address_pool} has no room for link {name!r}"])
        if candidate.num_addresses - 2 < len(link.endpoints):
            raise ScenarioError(
                [
                    f"topology.subnet_prefix /{topology.subnet_prefix} is too small "
                    f"for the {len(link.endpoints)} endpoints of link {name!r}"
                ]
            )
        result[name] = candidate
    return result


def _assign_addresses(topology: Topology, name: str, subnet: ipaddress.IPv4Network) -> dict[str, ipaddress.IPv4Address]:
    """Routers take the lowest host addresses (.1, .2, ...), hosts follow from .10 where room allows."""
    link = topology.links[name]
    taken = dict(link.addresses)
    used = set(taken.values())
    routers = [n for n in link.endpoints if topology.nodes[n].kind == "router" and n not in taken]
    others = [n for n in link.endpoints if topology.nodes[n].kind != "router" and n not in taken]
    last_host = subnet.num_addresses - 2  # offsets 1..last_host are host addresses

    def next_free(offset: int) -> tuple[int, ipaddress.IPv4Address]:
        while offset <= last_host and subnet.network_address + offset in used:
            offset += 1
        return offset, subnet.network_address + offset

    offset = 1
    for node in routers:
        offset, taken[node] = next_free(offset)
        used.add(taken[node])
    offset = 10 if last_host >= 10 + len(others) + len(routers) else offset
    for node in others:
        offset, taken[node] = next_free(offset)
        used.add(taken[node])
    return taken


def _routes(topology: Topology, segments: dict[str, Segment], interfaces: list[Interface]) -> list[Route]:
    address = {(i.node, i.link): i for i in interfaces}
    node_links: dict[str, list[str]] = {n: [] for n in topology.nodes}
    for segment in segments.values():
        for endpoint in segment.endpoints:
            node_links[endpoint].append(segment.name)
    routes: list[Route] = []
    for source in topology.nodes:
        # breadth-first over (node) reached via first hop; only routers are expanded past the source
        first_hop: dict[str, tuple[str, str]] = {}  # node -> (gateway node, link from source)
        reached_links = set(node_links[source])
        queue: deque[str] = deque()
        for link in node_links[source]:
            for neighbour in segments[link].endpoints:
                if neighbour != source and neighbour not in first_hop:
                    first_hop[neighbour] = (neighbour, link)
                    queue.append(neighbour)
        while queue:
            node = queue.popleft()
            if topology.nodes[node].kind != "router":
                continue
            for link in node_links[node]:
                if link not in reached_links:
                    reached_links.add(link)
                    gateway, via = first_hop[node]
                    routes.append(
                        Route(
                            source,
                            segments[link].subnet,
                            address[(gateway, via)].address.ip,
                            address[(source, via)].ifname,
                        )
                    )
                for neighbour in segments[link].endpoints:
                    if neighbour != source and neighbour not in first_hop:
                        first_hop[neighbour] = first_hop[node]
                        queue.append(neighbour)
    return routes


def plan_addresses(topology: Topology) -> AddressPlan:
    """Give every segment a subnet, every endpoint an address and every node routes to all subnets."""
    subnets = _allocate_subnets(topology)
    segments: dict[str, Segment] = {}
    interfaces: list[Interface] = []
    for name, link in topology.links.items():
        segment = Segment(name, subnets[name], tuple(link.endpoints), link.mtu)
        segments[name] = segment
        addresses = _assign_addresses(topology, name, segment.subnet)
        for node in link.endpoints:
            interfaces.append(
                Interface(
                    node, name, name, ipaddress.IPv4Interface(f"{addresses[node]}/{segment.subnet.prefixlen}"), link.mtu
                )
            )
    routes = _routes(topology, segments, interfaces)
    return AddressPlan({n: spec.kind for n, spec in topology.nodes.items()}, segments, interfaces, routes)
