"""Calls from the harness's side: expand the scenario's calls, place them in batches through the nodes'
agents (relaying each leg's description from caller to callee and back, as a dialer's signalling
server would), follow their state from the agents' events, and end them in three steps: stop the
media, let the path drain, hang up. The endpoint kind of each side (``aiortc`` today) is the agent's
business; this module never knows what an endpoint is made of."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import PrivateAttr

from testbed.lab.turn import TurnEndpoint
from testbed.results import CallRecord, LegSummary
from testbed.scenario.model import CallSpec
from testbed.workload.agents import AgentError, Agents

SIDES = ("caller", "callee")
CLIPS = {"caller": "client", "callee": "gateway"}  # each side sends its own voice, so directions never mix
# Between stopping a call's media and hanging up: long enough for the last packets of an unloaded path
# and for each agent to handle what is already in its sockets before it closes them. Paths with standing
# queues need more; sizing it from the delays seen is still to come (docs/design.md, "The endpoint
# interface").
DRAIN_S = 0.2


class Call(CallRecord):
    """One call while it runs: the record workload.json keeps, plus which sides have connected."""

    _connected_sides: set[str] = PrivateAttr(default_factory=set)
    _ice_config: dict[str, Any] | None = PrivateAttr(default=None)  # servers and credentials: never recorded

    def node(self, side: str) -> str:
        return self.caller if side == "caller" else self.callee

    def leg(self, side: str, out_dir: Path) -> dict[str, Any]:
        """This side's ``LegSpec`` as the agent receives it."""
        marking = self.marking.get(side, {})
        return {
            "call": self.id,
            "role": side,
            "codec": self.codec,
            "dscp": marking.get("dscp", self.dscp),
            "network_priority": marking.get("network_priority", "unset"),
            "clip": CLIPS[side],
            "out_dir": str(out_dir),
            "ice": self._ice_config if side == "caller" else None,
        }

    def use_turn(self, turn: TurnEndpoint | None) -> None:
        """Give the caller's leg the ICE servers its ``ice`` asks for, from the lab's TURN server."""
        self._ice_config = ice_config(self.ice, turn)

    def side_connected(self, side: str) -> bool:
        """Note that ``side`` is connected; True once both are."""
        self._connected_sides.add(side)
        return len(self._connected_sides) == 2

    def fail(self, outcome: str, reason: str) -> None:
        if self.outcome == "pending":
            self.outcome, self.reason = outcome, reason

    def record(self) -> CallRecord:
        return CallRecord.model_validate(self.model_dump())


def expand_calls(specs: list[CallSpec]) -> list[Call]:
    """One call per placed call: a spec with ``count: N`` gives N calls named ``NAME-1`` ... ``NAME-N``."""
    calls = []
    for index, spec in enumerate(specs, start=1):
        name = spec.name or f"call{index}"
        for number in range(1, spec.count + 1):
            call_id = name if spec.count == 1 else f"{name}-{number}"
            calls.append(
                Call(
                    id=call_id,
                    name=name,
                    caller=spec.from_,
                    callee=spec.to,
                    codec=spec.codec,
                    dscp=spec.dscp,
                    start=spec.start,
                    duration=spec.duration,
                    setup_timeout=spec.setup_timeout,
                    endpoints={"caller": spec.endpoint.from_.kind, "callee": spec.endpoint.to.kind},
                    ice=spec.ice.model_dump() if spec.ice.configured else {},
                    marking={
                        side: dict(zip(("dscp", "network_priority"), endpoint.marking(spec.dscp), strict=True))
                        for side, endpoint in (("caller", spec.endpoint.from_), ("callee", spec.endpoint.to))
                    },
                )
            )
    return calls


def ice_config(asked: dict[str, Any], turn: TurnEndpoint | None) -> dict[str, Any] | None:
    """What a caller's endpoint gets: RTCIceServer-like entries for the transports asked for, the policy,
    and the lab CA (file, and its server key's SPKI for a browser) it must trust for TLS."""
    if not asked:
        return None
    servers: list[dict[str, Any]] = []
    if turn is not None and asked.get("turn"):
        servers.append(
            {"urls": [turn.url(t) for t in asked["turn"]], "username": turn.username, "credential": turn.password}
        )
    if turn is not None and asked.get("stun"):
        servers.append({"urls": [turn.stun_url()]})
    return {
        "servers": servers,
        "policy": asked.get("policy", "all"),
        "ca_file": turn.ca_file if turn else None,
        "address": turn.address if turn else None,
        "spki": turn.spki_sha256 if turn else None,
    }


def _batches(calls: Iterable[Call], side: str) -> dict[tuple[str, str], list[Call]]:
    """Calls grouped by the node and endpoint kind that serve their ``side``: one request per group."""
    groups: dict[tuple[str, str], list[Call]] = defaultdict(list)
    for call in calls:
        groups[(call.node(side), call.endpoints[side])].append(call)
    return groups


def _each(
    agents: Agents,
    calls: list[Call],
    side: str,
    command: str,
    arguments: Callable[[list[Call]], dict[str, Any]],
    timeout: float = 60.0,
) -> list[tuple[Call, Any]]:
    """Send ``command`` per (node, kind) batch; pair each call with its result. A batch the agent refuses
    marks its calls as errors; a per-leg ``{"error": ...}`` marks that call only."""
    paired = []
    for (node, kind), batch in _batches(calls, side).items():
        try:
            results = agents[node].call(command, timeout=timeout, kind=kind, **arguments(batch))["legs"]
        except AgentError as exc:
            for call in batch:
                call.fail("error", str(exc))
            continue
        for call, result in zip(batch, results, strict=True):
            if isinstance(result, dict) and result.get("error"):
                call.fail("error", f"{node}: {result['error']}")
            else:
                paired.append((call, result))
    return paired


def signal_through_lab(agents: Agents, calls: list[Call], url: str, ca_file: str) -> None:
    """Every call node carries its offers and answers through the lab's signalling service. An exchange
    gives up just before the calls' setup timeout, so a call whose signalling cannot get through says so."""
    timeout = max(1.0, 0.75 * min((call.setup_timeout for call in calls), default=10.0))
    for node in sorted({call.node(side) for call in calls for side in SIDES}):
        agents[node].call("signalling", url=url, ca_file=ca_file, wait_s=timeout)


def trust_lab_ca(agents: Agents, calls: list[Call]) -> None:
    """Callers that use the lab's TURN server trust its CA (one per lab) before their endpoints start."""
    configs = [call for call in calls if call._ice_config and call._ice_config.get("ca_file")]
    for node in sorted({call.caller for call in configs}):
        config = configs[0]._ice_config or {}
        agents[node].call("lab_trust", ca_file=config["ca_file"], spki=config["spki"], hosts=[config["address"]])


def prepare(agents: Agents, calls: list[Call]) -> None:
    """Let every endpoint load its codec and encode its clip (a browser launch its legs' browsers) before
    the workload's clock starts."""
    trust_lab_ca(agents, calls)
    needed: Counter[tuple[str, str, str, str]] = Counter()
    longest: dict[tuple[str, str, str, str], float] = {}
    for call in calls:
        for side in SIDES:
            key = (call.node(side), call.endpoints[side], call.codec, CLIPS[side])
            needed[key] += 1
            longest[key] = max(longest.get(key, 0.0), call.duration)
    futures = [
        agents[node].request(
            "endpoint_prepare", kind=kind, codec=codec, clip=clip, legs=legs, seconds=longest[(node, kind, codec, clip)]
        )
        for (node, kind, codec, clip), legs in needed.items()
    ]
    for future in futures:
        future.result(120)


def place_calls(agents: Agents, calls: list[Call], out_dir: Path) -> None:
    """Open the callers' legs, answer at the callees, accept at the callers; connection follows by events."""
    now = time.time()
    for call in calls:
        call.offered_at = now
    offers = _each(agents, calls, "caller", "endpoint_open", lambda b: {"legs": [c.leg("caller", out_dir) for c in b]})
    offered = {call.id: offer for call, offer in offers}
    live = [call for call in calls if call.id in offered]
    answers = _each(
        agents,
        live,
        "callee",
        "endpoint_answer",
        lambda b: {"legs": [c.leg("callee", out_dir) for c in b], "remotes": [offered[c.id] for c in b]},
    )
    answered = {call.id: answer for call, answer in answers}
    live = [call for call in live if call.id in answered]
    _each(
        agents,
        live,
        "caller",
        "endpoint_accept",
        lambda b: {"calls": [c.id for c in b], "remotes": [answered[c.id] for c in b]},
    )


def on_call_event(call: Call, node: str, message: dict[str, Any]) -> None:
    """Apply an agent's call event: both sides connected -> connected; a side failing -> failed/dropped."""
    side = "caller" if node == call.caller else "callee"
    state = message.get("state")
    if state == "connected":
        if call.side_connected(side) and call.connected_at is None and call.outcome == "pending":
            call.connected_at = message["time"]
            call.setup_s = round(call.connected_at - (call.offered_at or call.connected_at), 4)
            call.outcome = "connected"
    elif state == "dropped" and call.outcome == "connected":
        call.outcome, call.dropped_at = "dropped", message["time"]
        call.reason = f"{node}: {message.get('reason') or 'lost the connection'}"
    elif state in ("failed", "dropped") and call.outcome == "pending":
        call.outcome, call.reason = "failed", f"{node}: {message.get('reason') or 'ICE/DTLS failed'}"


def check_setup_timeout(call: Call, now: float) -> None:
    if call.outcome == "pending" and call.offered_at is not None and now - call.offered_at > call.setup_timeout:
        call.outcome = "failed"
        call.reason = f"not connected within the setup timeout of {call.setup_timeout:g}s"


def end_calls(agents: Agents, calls: list[Call], drain_s: float = DRAIN_S) -> None:
    """Stop both sides' media, wait ``drain_s`` for packets still on the path, then hang up both sides and
    keep each side's summary. A side that is gone is noted, not fatal."""
    for side in SIDES:
        _each(agents, calls, side, "endpoint_stop_media", lambda b: {"calls": [c.id for c in b]}, timeout=30)
    if drain_s > 0:
        time.sleep(drain_s)
    for side in SIDES:
        for (node, kind), batch in _batches(calls, side).items():
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
                        "clip": CLIPS[side],
                        "error": summary.get("error") or "no summary",
                    }
                call.sides[side] = LegSummary.model_validate(summary)
