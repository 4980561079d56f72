"""Call endpoints behind one interface: the scenario offers exactly the kinds the registry has, and the
harness batches legs per node and kind."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from testbed.media.endpoints import KINDS, LegSpec
from testbed.scenario.endpoints import EndpointKind
from testbed.scenario.model import Scenario
from testbed.workload.call_plan import Call, expand_calls, side_batches


def test_the_scenario_offers_the_registered_kinds():
    assert set(get_args(EndpointKind)) == set(KINDS)


def test_a_call_group_is_one_batch_per_node_and_kind():
    scenario = Scenario.model_validate(
        {"name": "batch", "calls": [{"name": "rep", "count": 5}, {"name": "solo", "from": "gateway", "to": "client"}]}
    )
    calls = expand_calls(scenario.calls)
    assert [c.id for c in calls] == ["rep-1", "rep-2", "rep-3", "rep-4", "rep-5", "solo"]
    by_caller = side_batches(calls, "caller")
    assert {key: [c.id for c in batch] for key, batch in by_caller.items()} == {
        ("client", "aiortc"): ["rep-1", "rep-2", "rep-3", "rep-4", "rep-5"],
        ("gateway", "aiortc"): ["solo"],
    }


def test_a_leg_is_what_the_endpoint_receives():
    call = Call(
        id="c",
        name="c",
        caller="client",
        callee="gateway",
        codec="opus",
        dscp=46,
        start=0,
        duration=5,
        setup_timeout=10,
    )
    leg = LegSpec(**call.leg("callee", Path("/tmp/x")))
    assert (leg.role, leg.clip, leg.codec, leg.dscp) == ("callee", "gateway", "opus", 46)
