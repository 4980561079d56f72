"""Calls: set one up by relaying offer and answer between two agents (as a dialer's signalling server
would), follow its state from the agents' events, hang it up and collect both sides' summaries."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.media.control import AgentError, Agents
from testbed.scenario.model import CallSpec


@dataclass
class CallRecord:
    """One call as it went: outcome, setup time, when it connected and ended, both sides' summaries."""

    id: str
    name: str
    caller: str
    callee: str
    codec: str
    dscp: int
    start: float  # scheduled, seconds into the run
    duration: float
    setup_timeout: float
    outcome: str = "pending"  # connected | failed | dropped | error
    reason: str = ""
    offered_at: float | None = None  # epoch seconds
    connected_at: float | None = None  # both sides connected
    dropped_at: float | None = None
    setup_s: float | None = None
    sides: dict[str, dict[str, Any]] = field(default_factory=dict)  # "caller"/"callee" -> agent summary
    connected_sides: set[str] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "connected_sides"}
        return data


def expand_calls(specs: list[CallSpec]) -> list[CallRecord]:
    """One record per call: a spec with ``count: N`` gives N calls named ``NAME-1`` ... ``NAME-N``."""
    records = []
    for index, spec in enumerate(specs, start=1):
        name = spec.name or f"call{index}"
        for number in range(1, spec.count + 1):
            call_id = name if spec.count == 1 else f"{name}-{number}"
            records.append(
                CallRecord(
                    call_id,
                    name,
                    spec.from_,
                    spec.to,
                    spec.codec,
                    spec.dscp,
                    spec.start,
                    spec.duration,
                    spec.setup_timeout,
                )
            )
    return records


def place_call(agents: Agents, call: CallRecord, out_dir: Path) -> None:
    """Offer from the caller, answer from the callee, accept at the caller. Connection follows by events."""
    common = {"call": call.id, "codec": call.codec, "dscp": call.dscp, "out_dir": str(out_dir)}
    call.offered_at = time.time()
    try:
        offer = agents[call.caller].call("call_offer", clip="client", **common)
        answer = agents[call.callee].call("call_answer", clip="gateway", sdp=offer["sdp"], **common)
        agents[call.caller].call("call_accept", call=call.id, sdp=answer["sdp"])
    except AgentError as exc:
        call.outcome, call.reason = "error", str(exc)


def on_call_event(call: CallRecord, node: str, message: dict[str, Any]) -> None:
    """Apply an agent's call event: both sides connected -> connected; a side failing -> failed/dropped."""
    side = "caller" if node == call.caller else "callee"
    state = message.get("state")
    if state == "connected":
        call.connected_sides.add(side)
        if len(call.connected_sides) == 2 and call.connected_at is None and call.outcome == "pending":
            call.connected_at = message["time"]
            call.setup_s = round(call.connected_at - (call.offered_at or call.connected_at), 4)
            call.outcome = "connected"
    elif state == "dropped" and call.outcome == "connected":
        call.outcome, call.dropped_at = "dropped", message["time"]
        call.reason = f"{node} lost the connection"
    elif state == "failed" and call.outcome == "pending":
        call.outcome, call.reason = "failed", f"{node}: ICE/DTLS failed"


def check_setup_timeout(call: CallRecord, now: float) -> None:
    if call.outcome == "pending" and call.offered_at is not None and now - call.offered_at > call.setup_timeout:
        call.outcome = "failed"
        call.reason = f"not connected within the setup timeout of {call.setup_timeout:g}s"


def hang_up(agents: Agents, call: CallRecord) -> None:
    """End both sides; keep each side's summary (packets, files). A side that is gone is noted, not fatal."""
    for side, node in (("caller", call.caller), ("callee", call.callee)):
        try:
            call.sides[side] = agents[node].call("call_hangup", timeout=30, call=call.id)
        except AgentError as exc:
            call.sides[side] = {"error": str(exc)}
