"""VPN tunnels without a kernel: the model, its located errors, variant overrides and the tunnel plan."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from testbed.errors import ScenarioError
from testbed.lab.tunnels import plan_tunnels
from testbed.scenario import load_scenario
from testbed.scenario.addressing import plan_addresses
from testbed.scenario.model import Topology, TunnelSpec
from tests.helpers import REPO

BASE = """\
name: t
topology:
  nodes:
    client: {}
    router: {kind: router}
    gateway: {}
    concentrator: {}
  links:
    lan: {endpoints: [client, router]}
    wan: {endpoints: [router, gateway, concentrator]}
  tunnels:
"""


def load(tmp_path, tunnels: str, rest: str = ""):
    path = tmp_path / "t.yaml"
    path.write_text(BASE + textwrap.indent(textwrap.dedent(tunnels).rstrip() + "\n", "    ") + textwrap.dedent(rest))
    return load_scenario(path)


def problems(tmp_path, tunnels: str, rest: str = "") -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        load(tmp_path, tunnels, rest)
    return caught.value.problems


def topology(**tunnels) -> Topology:
    return Topology.model_validate(
        {
            "nodes": {"client": {}, "router": {"kind": "router"}, "gateway": {}, "concentrator": {}},
            "links": {
                "lan": {"endpoints": ["client", "router"]},
                "wan": {"endpoints": ["router", "gateway", "concentrator"]},
            },
            "tunnels": tunnels,
        }
    )


def test_defaults():
    spec = TunnelSpec.model_validate({"endpoints": ["client", "concentrator"]})
    assert (spec.kind, spec.copy_dscp, spec.routes, spec.subnet, spec.mtu) == ("gre", False, [], None, None)
    assert Topology().tunnels == {}


def test_a_valid_tunnel_loads(tmp_path):
    loaded = load(tmp_path, "vpn: {kind: vxlan, endpoints: [client, concentrator], copy_dscp: true, routes: [gateway]}")
    tunnel = loaded.scenario.topology.tunnels["vpn"]
    assert tunnel.kind == "vxlan" and tunnel.copy_dscp and tunnel.routes == ["gateway"]


@pytest.mark.parametrize(
    "tunnels, line, expected",
    [
        (
            "vpn: {endpoints: [client, concentrtor]}",
            12,
            "topology.tunnels.vpn.endpoints[1]: unknown node 'concentrtor'; did you mean 'concentrator'?",
        ),
        ("vpn: {endpoints: [client, client]}", 12, "a tunnel joins two different nodes (got 'client' twice)"),
        ("vpn: {endpoints: [client]}", 12, "topology.tunnels.vpn.endpoints"),
        (
            "vpn: {endpoints: [client, concentrator], routes: [gatway]}",
            12,
            "topology.tunnels.vpn.routes[0]: unknown node 'gatway'; did you mean 'gateway'?",
        ),
        (
            "vpn: {endpoints: [client, concentrator], routes: [concentrator]}",
            12,
            "topology.tunnels.vpn.routes[0]: 'concentrator' is an endpoint of tunnel 'vpn'",
        ),
        ("vpn: {endpoints: [client, concentrator], kind: ipsec}", 12, "topology.tunnels.vpn.kind"),
        ("wan: {endpoints: [client, concentrator]}", 12, "tunnel 'wan' has the name of link 'wan'"),
        ("gre0: {endpoints: [client, concentrator]}", 12, "a device the kernel creates itself"),
        (
            "vpn: {endpoints: [client, concentrator], subnet: 198.18.1.0/25}",
            12,
            "topology.tunnels.vpn.subnet: 198.18.1.0/25 overlaps 198.18.1.0/24 of link 'wan'",
        ),
        ("vpn: {endpoints: [client, concentrator], subnet: 10.0.0.0/31}", 12, "has no room for two addresses"),
        ("vpn: {endpoints: [client, concentrator], mtu: 100}", 12, "topology.tunnels.vpn.mtu"),
    ],
)
def test_located_errors(tmp_path, tunnels, line, expected):
    found = problems(tmp_path, tunnels)
    assert found[0].startswith(f"{tmp_path / 't.yaml'}:{line}: "), found
    assert expected in found[0], found


def test_two_tunnels_may_not_route_one_target_or_join_one_pair_twice_with_gre(tmp_path):
    found = problems(
        tmp_path,
        """\
        a: {endpoints: [client, concentrator], routes: [gateway]}
        b: {endpoints: [concentrator, client], routes: [router]}
        c: {kind: vxlan, endpoints: [client, concentrator], routes: [gateway], subnet: 10.9.0.0/30}
        d: {kind: vxlan, endpoints: [client, gateway], subnet: 10.9.0.0/29}
        """,
    )
    assert any("tunnels.b.endpoints: GRE tunnel 'a' already joins these two nodes" in p for p in found), found
    assert any("tunnels.c.routes[0]: 'client' already reaches 'gateway' through tunnel 'a'" in p for p in found)
    assert any("tunnels.d.subnet: 10.9.0.0/29 overlaps 10.9.0.0/30 of tunnel 'c'" in p for p in found), found
    assert len(found) == 3, found


def test_variants_change_tunnel_fields(tmp_path):
    loaded = load(
        tmp_path,
        "vpn: {endpoints: [client, concentrator], routes: [gateway], mtu: 1400}",
        """\
        variants:
          plain: {}
          copied: {tunnels: {vpn: {copy_dscp: true}}}
          split: {tunnels: {vpn: {routes: []}}}
        """,
    )
    plain, copied, split = (loaded.variant(v).topology.tunnels["vpn"] for v in ("plain", "copied", "split"))
    assert not plain.copy_dscp and copied.copy_dscp and copied.routes == ["gateway"] and copied.mtu == 1400
    assert split.routes == [] and not split.copy_dscp
    assert loaded.variant("copied").topology.links == loaded.scenario.topology.links


@pytest.mark.parametrize(
    "variant, expected",
    [
        ("{tunnels: {vnp: {copy_dscp: true}}}", "variants.v.tunnels.vnp: unknown tunnel 'vnp'; did you mean 'vpn'?"),
        ("{tunnels: {vpn: {routes: [gatway]}}}", "variants.v.tunnels.vpn.routes[0]: unknown node 'gatway'"),
        ("{tunnels: {vpn: {copy_dscp: maybe}}}", "copy_dscp"),
    ],
)
def test_variant_tunnel_errors(tmp_path, variant, expected):
    found = problems(tmp_path, "vpn: {endpoints: [client, concentrator]}", f"variants:\n  v: {variant}\n")
    assert any(expected in p for p in found), found


def test_plan_addresses_mtu_and_routes():
    topo = topology(
        vpn={"endpoints": ["client", "concentrator"], "routes": ["gateway"]},
        vx={"kind": "vxlan", "endpoints": ["client", "gateway"], "copy_dscp": True, "mtu": 1400},
    )
    plan = plan_addresses(topo)
    vpn, vx = plan_tunnels(topo, plan)
    assert vpn.subnet == ipaddress.IPv4Network("198.18.2.0/24")  # after lan and wan
    assert vx.subnet == ipaddress.IPv4Network("198.18.3.0/24")
    assert [str(end.address) for end in vpn.ends] == ["198.18.2.1/24", "198.18.2.2/24"]
    assert [end.underlay for end in vpn.ends] == [plan.address("client"), plan.address("concentrator")]
    assert (vpn.kind, vpn.mtu, vpn.copy_dscp, vpn.vni) == ("gre", 1476, False, 1)
    assert (vx.kind, vx.mtu, vx.copy_dscp, vx.vni) == ("vxlan", 1400, True, 2)
    assert {(r.node, str(r.destination), str(r.gateway), r.ifname) for r in vpn.routes} == {
        ("client", f"{plan.address('gateway')}/32", "198.18.2.2", "vpn"),  # into the tunnel
        ("gateway", "198.18.2.0/24", str(plan.address("concentrator")), "wan"),  # back via the concentrator
    }
    assert vx.routes == ()
    assert (
        plan_tunnels(
            topo.model_copy(update={"tunnels": {"vx": topo.tunnels["vx"].model_copy(update={"mtu": None})}}), plan
        )[0].mtu
        == 1450
    )


def test_return_path_crosses_routers_and_neighbours_stay_direct():
    """A target two routers away from the concentrator: each router on the way learns the tunnel subnet."""
    topo = Topology.model_validate(
        {
            "nodes": {
                "client": {},
                "peer": {},
                "r1": {"kind": "router"},
                "r2": {"kind": "router"},
                "server": {},
                "concentrator": {},
            },
            "links": {
                "lan": {"endpoints": ["client", "peer", "r1"]},
                "core": {"endpoints": ["r1", "concentrator", "r2"]},
                "dc": {"endpoints": ["r2", "server"]},
            },
            "tunnels": {
                "vpn": {"endpoints": ["client", "concentrator"], "routes": ["server", "peer"], "subnet": "10.8.0.0/30"}
            },
        }
    )
    plan = plan_addresses(topo)
    (vpn,) = plan_tunnels(topo, plan)
    routes = {(r.node, str(r.destination)): (str(r.gateway), r.ifname) for r in vpn.routes}
    assert routes == {
        ("client", f"{plan.address('server')}/32"): ("10.8.0.2", "vpn"),
        ("server", "10.8.0.0/30"): (str(plan.address("r2", "dc")), "dc"),
        ("r2", "10.8.0.0/30"): (str(plan.address("concentrator")), "core"),
        ("peer", "10.8.0.0/30"): (str(plan.address("r1", "lan")), "lan"),  # peer is on the client's own segment:
        ("r1", "10.8.0.0/30"): (str(plan.address("concentrator")), "core"),  # reached directly, answers via r1
    }


def test_full_pool_is_an_input_error():
    topo = Topology.model_validate(
        {
            "nodes": {"a": {}, "b": {}},
            "links": {"l": {"endpoints": ["a", "b"]}},
            "address_pool": "10.0.0.0/24",
            "subnet_prefix": 24,
            "tunnels": {"vpn": {"endpoints": ["a", "b"]}},
        }
    )
    with pytest.raises(ScenarioError, match="no room for tunnel 'vpn'"):
        plan_tunnels(topo, plan_addresses(topo))


def test_shipped_vpn_scenario_variants():
    loaded = load_scenario(REPO / "scenarios" / "vpn.yaml")
    tunnels = {v: loaded.variant(v).topology.tunnels["vpn"] for v in loaded.variant_names}
    assert {v: (t.copy_dscp, t.routes) for v, t in tunnels.items()} == {
        "tunnel": (False, ["gateway"]),
        "tunnel-dscp-copied": (True, ["gateway"]),
        "no-tunnel": (False, []),
    }
    assert all(
        loaded.variant_templates[v].description == loaded.variant_templates["tunnel"].description
        for v in loaded.variant_names
    ), "only the tunnel differs between variants"
