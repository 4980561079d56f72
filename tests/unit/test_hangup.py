"""The end of a call: the drain ends as soon as each side has every packet the other sent (or the last
one), and waits for quiet (at least the minimum) where counts are missing or the last packet was lost."""

from __future__ import annotations

from typing import Any

from testbed.scenario.model import Scenario
from testbed.workload.call_plan import expand_calls
from testbed.workload.hangup import DRAIN_S, QUIET_S, all_delivered, drain


def _calls() -> list[Any]:
    return expand_calls(Scenario.model_validate({"name": "end", "calls": [{"name": "c", "count": 2}]}).calls)


class FakeAgent:
    """Answers endpoint_quiet_for with a received count that grows to ``full`` over ``polls`` polls."""

    def __init__(self, full: int | None, polls: int, quiet: float | None = 0.0) -> None:
        self.full, self.polls, self.quiet, self.asked = full, polls, quiet, 0

    def call(self, command: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        assert command == "endpoint_quiet_for"
        self.asked += 1
        received = None if self.full is None else (self.full if self.asked > self.polls else self.full - 1)
        last = None if received is None else received  # in order: the last arrival's number is the count
        return {"legs": [{"quiet": self.quiet, "received": received, "last_seq": last} for _ in args["calls"]]}


def test_delivered_means_every_direction_has_what_the_other_side_sent() -> None:
    calls = _calls()
    sides = ("caller", "callee")
    sent = {(c.id, side): {"sent": 500, "last_seq": 9} for c in calls for side in sides}
    heard = {(c.id, side): {"quiet": 0.01, "received": 500, "last_seq": 9} for c in calls for side in sides}
    assert all_delivered(calls, sent, heard)
    heard[(calls[1].id, "callee")] = {"quiet": 0.01, "received": 499, "last_seq": 8}  # one still on the way
    assert not all_delivered(calls, sent, heard)
    heard[(calls[1].id, "callee")] = {"quiet": 0.01, "received": 470, "last_seq": 9}  # lost 30, the last arrived
    assert all_delivered(calls, sent, heard)
    heard[(calls[1].id, "callee")] = {"quiet": 0.01, "received": None, "last_seq": None}  # a kind that cannot count
    assert not all_delivered(calls, sent, heard)
    heard[(calls[1].id, "callee")] = {"received": 500, "last_seq": 9}
    assert not all_delivered(calls, {**sent, (calls[0].id, "caller"): {}}, heard)  # a failed stop: no counts


def test_the_drain_ends_once_everything_arrived_without_padding() -> None:
    calls = _calls()
    sent = {(c.id, side): {"sent": 300, "last_seq": 300} for c in calls for side in ("caller", "callee")}
    agents = {"client": FakeAgent(300, polls=2, quiet=0.0), "gateway": FakeAgent(300, polls=2, quiet=0.0)}
    waited = drain(agents, calls, sent=sent)  # type: ignore[arg-type]
    assert waited < DRAIN_S  # the last packets arrived on the third poll: no minimum, no quiet time
    assert agents["client"].asked == 3


def test_without_counts_or_with_a_loss_the_drain_waits_for_quiet() -> None:
    calls = _calls()
    sent = {(c.id, side): {"sent": 300, "last_seq": 300} for c in calls for side in ("caller", "callee")}
    # the client heard 299 of 300 and its last arrival is not the last sent: the last one was lost
    lossy = {"client": FakeAgent(299, polls=0, quiet=QUIET_S), "gateway": FakeAgent(300, polls=0, quiet=QUIET_S)}
    assert drain(lossy, calls, sent=sent) >= DRAIN_S  # type: ignore[arg-type]
    uncounted = {"client": FakeAgent(None, polls=0, quiet=QUIET_S), "gateway": FakeAgent(None, polls=0, quiet=QUIET_S)}
    assert drain(uncounted, calls, sent=sent) >= DRAIN_S  # type: ignore[arg-type]
