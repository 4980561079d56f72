"""Wire nodes together with pyroute2: veth pairs created directly inside their namespaces, bridges for
segments with more than two endpoints, addresses, MTU, routes. Nothing is ever created in the root
namespace, so nothing can leak there.
"""

from __future__ import annotations

from pathlib import Path

from pyroute2 import IPRoute

from testbed.lab import netns
from testbed.lab.backends import Node
from testbed.scenario.addressing import AddressPlan, Segment

BRIDGE = "_bridge"  # node names have no "_", so no switch port can clash with it


class Netlink:
    """One rtnetlink socket per namespace, opened on first use and reused (pyroute2's ``netns=`` would
    fork a helper process per socket; docs/design.md, "One netlink socket per namespace")."""

    def __init__(self) -> None:
        self._sockets: dict[Path, IPRoute] = {}

    def __call__(self, path: Path) -> IPRoute:
        if path not in self._sockets:
            # our own socket made inside the namespace: pyroute2's netns= would fork a helper process
            self._sockets[path] = IPRoute(fileno=netns.netlink_socket(path).detach())
        return self._sockets[path]

    def close(self, path: Path | None = None) -> None:
        paths = [path] if path is not None else list(self._sockets)
        for key in paths:
            socket = self._sockets.pop(key, None)
            if socket is not None:
                socket.close()


def _index(ipr: IPRoute, ifname: str) -> int:
    index: int = ipr.link_lookup(ifname=ifname)[0]
    return index


def bring_up_loopback(netlink: Netlink, node: Node) -> None:
    ipr = netlink(node.netns_path)
    ipr.link("set", index=_index(ipr, "lo"), state="up")


def _veth(netlink: Netlink, a: Node, a_ifname: str, b: Node, b_ifname: str, mtu: int) -> None:
    ipr = netlink(a.netns_path)
    ipr.link(
        "add",
        ifname=a_ifname,
        kind="veth",
        mtu=mtu,
        peer={"ifname": b_ifname, "net_ns_fd": str(b.netns_path), "mtu": mtu},
    )


def wire_segment(netlink: Netlink, segment: Segment, nodes: dict[str, Node], switch: Node | None) -> None:
    """Create the segment's veths (and bridge). Interfaces in end nodes are named after the link."""
    if switch is None:
        a, b = (nodes[name] for name in segment.endpoints)
        _veth(netlink, a, segment.name, b, segment.name, segment.mtu)
        return
    ipr = netlink(switch.netns_path)
    ipr.link("add", ifname=BRIDGE, kind="bridge", mtu=segment.mtu)
    bridge = _index(ipr, BRIDGE)
    for endpoint in segment.endpoints:
        # the switch port is named after the node it leads to
        _veth(netlink, switch, endpoint, nodes[endpoint], segment.name, segment.mtu)
        ipr.link("set", index=_index(ipr, endpoint), master=bridge, state="up")
    ipr.link("set", index=bridge, state="up")


def configure_addresses(netlink: Netlink, plan: AddressPlan, nodes: dict[str, Node]) -> None:
    """Addresses up, then routes (a route's gateway must be on a connected, up interface)."""
    for interface in plan.interfaces:
        ipr = netlink(nodes[interface.node].netns_path)
        index = _index(ipr, interface.ifname)
        ipr.addr("add", index=index, address=str(interface.address.ip), prefixlen=interface.address.network.prefixlen)
        ipr.link("set", index=index, state="up")
    for route in plan.routes:
        ipr = netlink(nodes[route.node].netns_path)
        ipr.route("add", dst=str(route.destination), gateway=str(route.gateway), oif=_index(ipr, route.ifname))
