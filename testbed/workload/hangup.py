"""The end of a call: stop both sides' media, let the path drain, hang up and keep each side's summary.

Between stopping a call's media and hanging up, the path drains. The wait ends as soon as each side has
received every packet the other sent, or the last one it sent (where the endpoint counts: aiortc;
``all_delivered``); otherwise when every leg
of the batch has heard no RTP for QUIET_S (what was queued or delayed on the path has arrived by then),
after at least DRAIN_S (each agent handles what is already in its sockets); at most DRAIN_MAX_S (a
path that delays more than that is reported as packets in flight, not as loss; docs/design.md, "The
endpoint interface").
"""

from __future__ import annotations

import time
from typing import Any

from testbed.results import LegSummary
from testbed.workload.agents import AgentError, Agents
from testbed.workload.call_plan import SIDES, Call, side_batches
from testbed.workload.calls import per_batch

DRAIN_S = 0.2
QUIET_S = 0.3
DRAIN_MAX_S = 3.0
DRAIN_POLL_S = 0.05


def drain(
    agents: Agents,
    calls: list[Call],
    minimum: float = DRAIN_S,
    maximum: float = DRAIN_MAX_S,
    sent: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> float:
    """Wait until every direction of ``calls`` has delivered what it sent (``sent``: per call and side,
    what its ``stop_media`` answered), or every leg has been quiet for QUIET_S after at least
    ``minimum``, or ``maximum`` passed; seconds waited. Delivered ends the wait at once: nothing more is
    on the path, so there is nothing to pad for."""
    started = time.monotonic()
    while True:
        heard = {
            (call.id, side): value
            for side in SIDES
            for call, value in per_batch(agents, calls, side, "endpoint_quiet_for", _ids)
        }
        waited = time.monotonic() - started
        if sent is not None and all_delivered(calls, sent, heard):
            break
        quiet = [value.get("quiet") if isinstance(value, dict) else value for value in heard.values()]
        if waited >= minimum and all(value is None or value >= QUIET_S for value in quiet):
            break
        if waited >= maximum:
            break
        time.sleep(DRAIN_POLL_S)
    return round(time.monotonic() - started, 3)


def all_delivered(
    calls: list[Call], sent: dict[tuple[str, str], dict[str, Any]], heard: dict[tuple[str, str], Any]
) -> bool:
    """Whether every direction has delivered: its receiver has as many distinct packets as the sender
    sent, or the packet that arrived last is the last one sent (a path that lost some, in order: what
    is missing is lost, not late; a packet overtaken by the last one and still on its way counts as in
    flight at hang-up, never as lost: ``netstats.in_flight``). A side without counts (a browser, a
    failed leg) leaves the answer to the quiet rule."""
    for call in calls:
        for side in SIDES:
            other = "callee" if side == "caller" else "caller"
            got, gave = heard.get((call.id, side)), sent.get((call.id, other))
            if not isinstance(got, dict) or not isinstance(gave, dict):
                return False
            counted = got.get("received") is not None and gave.get("sent") is not None
            if counted and got["received"] >= gave["sent"]:
                continue
            if gave.get("last_seq") is not None and got.get("last_seq") == gave["last_seq"]:
                continue
            return False
    return True


def _ids(batch: list[Call]) -> dict[str, Any]:
    return {"calls": [c.id for c in batch]}


def end_calls(agents: Agents, calls: list[Call], drain_s: float = DRAIN_S, drain_max_s: float = DRAIN_MAX_S) -> None:
    """Stop both sides' media, let the path drain (``drain``), then hang up both sides and keep each
    side's summary. A side that is gone is noted, not fatal."""
    sent: dict[tuple[str, str], dict[str, Any]] = {}
    for side in SIDES:
        for call, stopped in per_batch(agents, calls, side, "endpoint_stop_media", _ids, timeout=30):
            sent[(call.id, side)] = stopped if isinstance(stopped, dict) else {}
    if drain_s > 0:
        waited = drain(agents, calls, drain_s, max(drain_s, drain_max_s), sent)
        for call in calls:
            call.drain_s = waited
    for side in SIDES:
        for (node, kind), batch in side_batches(calls, side).items():
            try:
                summaries = agents[node].call("endpoint_hang_up", timeout=60, kind=kind, calls=[c.id for c in batch])
                legs = summaries["legs"]
            except AgentError as exc:
                legs = [{"error": str(exc)}] * len(batch)
            for call, summary in zip(batch, legs, strict=True):
                if "codec" not in summary:  # the leg never existed or its agent is gone: say why
                    summary = {
                        "call": call.id,
                        "endpoint": kind,
                        "codec": call.codec,
                        "dscp": call.dscp,
                        "clip": call.clips[side],
                        "error": summary.get("error") or "no summary",
                    }
                call.sides[side] = LegSummary.model_validate(summary)
