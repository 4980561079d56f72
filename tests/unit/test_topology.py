"""The automatic address plan and routes, without a kernel."""

import ipaddress

import pytest

from testbed.scenario.addressing import free_subnets, plan_addresses
from testbed.scenario.model import Topology


def topology(**data) -> Topology:
    return Topology.model_validate(data)


def test_default_plan():
    plan = plan_addresses(Topology())
    assert str(plan.interface("router", "lan").address) == "198.18.0.1/24"
    assert str(plan.interface("client", "lan").address) == "198.18.0.10/24"
    assert str(plan.interface("router", "wan").address) == "198.18.1.1/24"
    assert str(plan.interface("gateway", "wan").address) == "198.18.1.10/24"
    routes = {(r.node, str(r.destination)): str(r.gateway) for r in plan.routes}
    assert routes == {("client", "198.18.1.0/24"): "198.18.0.1", ("gateway", "198.18.0.0/24"): "198.18.1.1"}


def test_overrides_are_kept_and_avoided():
    plan = plan_addresses(
        topology(
            nodes={"client": {}, "router": {"kind": "router"}, "gateway": {}},
            links={
                "lan": {
                    "endpoints": ["client", "router"],
                    "subnet": "192.168.1.0/24",
                    "addresses": {"router": "192.168.1.254"},
                },
                "wan": {"endpoints": ["router", "gateway"]},
            },
        )
    )
    assert str(plan.address("router", "lan")) == "192.168.1.254"
    assert str(plan.address("client", "lan")) == "192.168.1.10"
    assert plan.segments["wan"].subnet == ipaddress.IPv4Network("198.18.0.0/24")


def test_routes_cross_a_chain_of_routers():
    plan = plan_addresses(
        topology(
            nodes={"a": {}, "r1": {"kind": "router"}, "r2": {"kind": "router"}, "b": {}},
            links={
                "l1": {"endpoints": ["a", "r1"]},
                "l2": {"endpoints": ["r1", "r2"]},
                "l3": {"endpoints": ["r2", "b"]},
            },
        )
    )
    by_node = {}
    for route in plan.routes:
        by_node.setdefault(route.node, {})[str(route.destination)] = str(route.gateway)
    l1, l2, l3 = (str(plan.segments[n].subnet) for n in ("l1", "l2", "l3"))
    assert by_node["a"] == {l2: str(plan.address("r1", "l1")), l3: str(plan.address("r1", "l1"))}
    assert by_node["r1"] == {l3: str(plan.address("r2", "l2"))}
    assert by_node["r2"] == {l1: str(plan.address("r1", "l2"))}
    assert by_node["b"] == {l1: str(plan.address("r2", "l3")), l2: str(plan.address("r2", "l3"))}


def test_hosts_never_forward():
    """Two routers joined only through a host: no route may use the host as a gateway."""
    plan = plan_addresses(
        topology(
            nodes={"r1": {"kind": "router"}, "h": {}, "r2": {"kind": "router"}},
            links={"l1": {"endpoints": ["r1", "h"]}, "l2": {"endpoints": ["h", "r2"]}},
        )
    )
    assert not [r for r in plan.routes if r.node in ("r1", "r2")]


def test_segment_with_many_endpoints_is_switched():
    plan = plan_addresses(
        topology(
            nodes={"c1": {}, "c2": {}, "c3": {}, "router": {"kind": "router"}, "gateway": {}},
            links={"lan": {"endpoints": ["c1", "c2", "c3", "router"]}, "wan": {"endpoints": ["router", "gateway"]}},
        )
    )
    assert plan.segments["lan"].switched and not plan.segments["wan"].switched
    assert [str(plan.address(n)) for n in ("c1", "c2", "c3")] == ["198.18.0.10", "198.18.0.11", "198.18.0.12"]


def test_pool_too_small_is_a_clear_error():
    from testbed.errors import ScenarioError

    with pytest.raises(ScenarioError, match="address_pool 10.0.0.0/24 has no room"):
        plan_addresses(topology(address_pool="10.0.0.0/24"))


def test_free_subnets_skip_taken_ones_in_address_order():
    pool = ipaddress.IPv4Network("10.0.0.0/22")
    taken = [ipaddress.IPv4Network("10.0.1.0/25")]
    assert [str(n) for n in free_subnets(pool, 24, taken)] == ["10.0.0.0/24", "10.0.2.0/24", "10.0.3.0/24"]
    assert [str(n) for n in free_subnets(pool, 16, [])] == ["10.0.0.0/22"]  # never wider than the pool
    assert next(free_subnets(pool, 22, [pool]), None) is None
