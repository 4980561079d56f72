"""VPN tunnels over the lab's links: real kernel GRE or VXLAN devices, made with pyroute2.

A tunnel joins two nodes, the *first endpoint* (e.g. the client) and the *concentrator* (the VPN server,
somewhere beyond the router). Each end gets a device named after the tunnel, whose outer packets go
between the two nodes' underlay addresses (the address of each node's first link, already routed by the
address plan). What a router on the way sees is only those outer packets: GRE (IP protocol 47) or VXLAN
(UDP to port 4789), with DSCP 0 unless the tunnel copies the inner packet's TOS byte to the outer header
(``copy_dscp``: Linux's ``tos inherit``, IFLA_GRE_TOS = 1 or IFLA_VXLAN_TOS = 1). That is the whole
lesson of ``scenarios/vpn.yaml``: an EF-marked call inside a plain tunnel lands in the router's bulk class.

Routing, kept small:

- the first endpoint reaches each ``routes`` node's addresses (host routes, /32) via the concentrator's
  tunnel address. Host routes rather than the targets' subnets, so the concentrator's own underlay
  address, which may sit on a target's subnet, never gets routed into its own tunnel;
- the concentrator forwards (``ip_forward=1``; ``rp_filter=0``, since a packet from the first endpoint's
  LAN address arrives through the tunnel but would be answered through the underlay);
- each target routes the tunnel's subnet back via the concentrator: directly when they share a segment,
  otherwise via the target's usual next hop toward the concentrator, and so on for each router on that
  path, until a node on one of the concentrator's segments routes it to the concentrator;
- VXLAN ends know each other's MAC address (permanent neighbour entries), so no ARP runs inside the
  tunnel: ARP has no DSCP to copy and would queue in the router's bulk class (see ``_pin_neighbours``).

A program on the first endpoint that binds its LAN address (a WebRTC host candidate does) still sends
through the tunnel (routes go by destination), but the answer comes back outside it, to the LAN address.

Nothing needs tearing down: the devices, addresses and routes live in the lab's namespaces and go with them.
"""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from testbed.errors import CapabilityError, LabError, ScenarioError
from testbed.lab import netns
from testbed.lab.backends import Node
from testbed.lab.links import Netlink
from testbed.scenario.addressing import AddressPlan, Route, free_subnets
from testbed.scenario.model import Topology

OVERHEAD = {"gre": 24, "vxlan": 50}  # outer IPv4 (20) + GRE (4); outer IPv4 + UDP + VXLAN + inner Ethernet
VXLAN_PORT = 4789  # IANA's; Linux's own default is 8472
OUTER_TTL = 64
NUD_PERMANENT = 0x80
TOS_INHERIT = 1  # IFLA_GRE_TOS / IFLA_VXLAN_TOS: 1 means copy the inner TOS byte ("tos inherit")
CONCENTRATOR_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",  # the tunnel device is made afterwards and inherits it
}


@dataclass(frozen=True)
class TunnelEnd:
    node: str
    underlay: ipaddress.IPv4Address  # where the other end sends the outer packets
    address: ipaddress.IPv4Interface  # inside the tunnel


@dataclass(frozen=True)
class TunnelPlan:
    """One tunnel as it will be built: its two ends, device settings, and every route it needs."""

    name: str  # also the device name in both namespaces
    kind: str  # gre | vxlan
    copy_dscp: bool
    mtu: int
    vni: int  # vxlan: the network identifier (1-based position in topology.tunnels)
    subnet: ipaddress.IPv4Network
    ends: tuple[TunnelEnd, TunnelEnd]  # (first endpoint, concentrator)
    routes: tuple[Route, ...]  # into the tunnel on the first endpoint, back to it on targets and routers

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "copy_dscp": self.copy_dscp,
            "mtu": self.mtu,
            "subnet": str(self.subnet),
            "ends": {end.node: {"underlay": str(end.underlay), "address": str(end.address)} for end in self.ends},
            "routes": [f"{r.node}: {r.destination} via {r.gateway} dev {r.ifname}" for r in self.routes],
        }


# ------------------------------------------------------------------ plan (pure)


def _subnets(topology: Topology, plan: AddressPlan) -> dict[str, ipaddress.IPv4Network]:
    """Each tunnel's subnet: its own, or the next free one of the address pool after the links' subnets."""
    taken = [segment.subnet for segment in plan.segments.values()]
    taken += [tunnel.subnet for tunnel in topology.tunnels.values() if tunnel.subnet is not None]
    pool = topology.address_pool
    result: dict[str, ipaddress.IPv4Network] = {}
    for name, tunnel in topology.tunnels.items():
        if tunnel.subnet is not None:
            result[name] = tunnel.subnet
            continue
        free = next(free_subnets(pool, topology.subnet_prefix, taken), None)
        if free is None:
            raise ScenarioError([f"topology.address_pool {pool} has no room for tunnel {name!r}; give it a 'subnet'"])
        result[name] = free
        taken.append(free)
    return result


def _owner(plan: AddressPlan, address: ipaddress.IPv4Address) -> str:
    return next(i.node for i in plan.interfaces if i.address.ip == address)


def _return_routes(
    plan: AddressPlan,
    target: str,
    concentrator: str,
    subnet: ipaddress.IPv4Network,
) -> list[Route]:
    """Routes that carry ``subnet`` from ``target`` to the concentrator, hop by hop along the plan's routes."""
    concentrator_links = {i.link: i.address.ip for i in plan.node_interfaces(concentrator)}
    toward = plan.address(concentrator)
    routes: list[Route] = []
    node, visited = target, set()
    while node not in visited:
        visited.add(node)
        shared = [i for i in plan.node_interfaces(node) if i.link in concentrator_links]
        if shared:
            return routes + [Route(node, subnet, concentrator_links[shared[0].link], shared[0].ifname)]
        hop = next((r for r in plan.node_routes(node) if toward in r.destination), None)
        if hop is None:
            break
        routes.append(Route(node, subnet, hop.gateway, hop.ifname))
        node = _owner(plan, hop.gateway)
    raise LabError(f"no path from {target!r} back to the concentrator {concentrator!r} in the address plan")


def plan_tunnels(topology: Topology, plan: AddressPlan) -> list[TunnelPlan]:
    """Every tunnel's addresses, MTU and routes, from the topology and its address plan (no kernel calls)."""
    subnets = _subnets(topology, plan)
    tunnels: list[TunnelPlan] = []
    for position, (name, spec) in enumerate(topology.tunnels.items(), start=1):
        first, concentrator = spec.endpoints
        subnet = subnets[name]
        network = subnet.network_address
        ends = (
            TunnelEnd(first, plan.address(first), ipaddress.IPv4Interface(f"{network + 1}/{subnet.prefixlen}")),
            TunnelEnd(
                concentrator, plan.address(concentrator), ipaddress.IPv4Interface(f"{network + 2}/{subnet.prefixlen}")
            ),
        )
        underlay_mtu = min(plan.node_interfaces(node)[0].mtu for node in (first, concentrator))
        mtu = spec.mtu or underlay_mtu - OVERHEAD[spec.kind]
        own_links = {i.link for i in plan.node_interfaces(first)}
        routes: dict[tuple[str, ipaddress.IPv4Network], Route] = {}
        for target in spec.routes:
            for interface in plan.node_interfaces(target):
                if interface.link in own_links:
                    continue  # a neighbour on the first endpoint's own segment is reached directly
                destination = ipaddress.IPv4Network(f"{interface.address.ip}/32")
                routes[(first, destination)] = Route(first, destination, ends[1].address.ip, name)
            for route in _return_routes(plan, target, concentrator, subnet):
                routes.setdefault((route.node, route.destination), route)
        tunnels.append(TunnelPlan(name, spec.kind, spec.copy_dscp, mtu, position, subnet, ends, tuple(routes.values())))
    return tunnels


# ------------------------------------------------------------------ wiring (kernel)


def _add_device(ipr: IPRoute, tunnel: TunnelPlan, local: TunnelEnd, remote: TunnelEnd) -> None:
    tos = TOS_INHERIT if tunnel.copy_dscp else 0
    if tunnel.kind == "gre":
        device = {
            "kind": "gre",
            "gre_local": str(local.underlay),
            "gre_remote": str(remote.underlay),
            "gre_ttl": OUTER_TTL,
            "gre_tos": tos,
        }
    else:  # vxlan: unicast to the one remote (IFLA_VXLAN_GROUP holds a unicast remote as well as a group)
        device = {
            "kind": "vxlan",
            "vxlan_id": tunnel.vni,
            "vxlan_local": str(local.underlay),
            "vxlan_group": str(remote.underlay),
            "vxlan_port": VXLAN_PORT,
            "vxlan_ttl": OUTER_TTL,
            "vxlan_tos": tos,
        }
    try:
        ipr.link("add", ifname=tunnel.name, mtu=tunnel.mtu, **device)
    except NetlinkError as exc:
        if exc.code == errno.EOPNOTSUPP:  # "Unknown device type": the kernel has no such tunnel
            module = {"gre": "ip_gre", "vxlan": "vxlan"}[tunnel.kind]
            other = "vxlan" if tunnel.kind == "gre" else "gre"
            raise CapabilityError(
                f"tunnel {tunnel.name!r}: this kernel cannot make {tunnel.kind} devices (module "
                f"{module}); `modprobe {module}` on the host, or use kind: {other}"
            ) from None
        raise
    index = ipr.link_lookup(ifname=tunnel.name)[0]
    ipr.addr("add", index=index, address=str(local.address.ip), prefixlen=local.address.network.prefixlen)
    ipr.link("set", index=index, state="up")


def _pin_neighbours(a: IPRoute, b: IPRoute, tunnel: TunnelPlan) -> None:
    """VXLAN carries Ethernet, so each end would ARP for the other inside the tunnel, and ARP has no TOS to
    copy: its outer packets are DSCP 0 and wait in the router's bulk queue (a second behind a full one)
    before the first voice packet may leave. Permanent neighbour entries make it an L3 tunnel like GRE,
    as VPNs built on VXLAN do (static entries or EVPN ARP suppression)."""
    ends = [(a, tunnel.ends[0]), (b, tunnel.ends[1])]
    macs = [ipr.get_links(ipr.link_lookup(ifname=tunnel.name)[0])[0].get_attr("IFLA_ADDRESS") for ipr, _ in ends]
    for (ipr, _), (_, peer), peer_mac in zip(ends, reversed(ends), reversed(macs), strict=False):
        ipr.neigh(
            "add",
            dst=str(peer.address.ip),
            lladdr=peer_mac,
            ifindex=ipr.link_lookup(ifname=tunnel.name)[0],
            state=NUD_PERMANENT,
        )


def wire(netlink: Netlink, topology: Topology, plan: AddressPlan, nodes: dict[str, Node]) -> list[TunnelPlan]:
    """Build every tunnel of the topology; call after the lab's addresses and routes are configured."""
    tunnels = plan_tunnels(topology, plan)
    for tunnel in tunnels:
        first, concentrator = tunnel.ends
        netns.write_sysctls(nodes[concentrator.node].netns_path, CONCENTRATOR_SYSCTLS)
        a, b = netlink(nodes[first.node].netns_path), netlink(nodes[concentrator.node].netns_path)
        _add_device(a, tunnel, first, concentrator)
        _add_device(b, tunnel, concentrator, first)
        if tunnel.kind == "vxlan":
            _pin_neighbours(a, b, tunnel)
    for tunnel in tunnels:  # after all devices: a route may leave through another tunnel's device
        for route in tunnel.routes:
            ipr = netlink(nodes[route.node].netns_path)
            ipr.route(
                "add",
                dst=str(route.destination),
                gateway=str(route.gateway),
                oif=ipr.link_lookup(ifname=route.ifname)[0],
            )
    return tunnels
