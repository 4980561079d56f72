"""The calls a scenario places, before any of them runs: one ``Call`` per placed call (a ``count: N``
spec gives N), what each side's leg asks of its agent, and the ICE servers a caller gets. Pure: the
runner reads it before the lab exists (which clips to encode), without the agents and the lab's imports."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr

from testbed.results import CallRecord
from testbed.scenario.model import CallSpec

if TYPE_CHECKING:
    from testbed.lab.turn import TurnEndpoint

SIDES = ("caller", "callee")
CLIPS = {"caller": "client", "callee": "gateway"}  # each side sends its own voice, so directions never mix


class Call(CallRecord):
    """One call while it runs: the record workload.json keeps, plus which sides have connected."""

    _connected_sides: set[str] = PrivateAttr(default_factory=set)
    _ice_config: dict[str, Any] | None = PrivateAttr(default=None)  # servers and credentials: never recorded

    _ended: bool = PrivateAttr(default=False)

    @property
    def longest(self) -> float:
        """The most this call can last from placing it: its duration, or setup timeout plus talk time."""
        return self.duration if self.talk is None else self.setup_timeout + self.talk

    @property
    def ended(self) -> bool:
        return self._ended

    def take_end(self) -> bool:
        """True once: whoever ends the call first (its talk time, or the fallback end) ends it."""
        ended, self._ended = self._ended, True
        return not ended

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
            "clip": self.clips.get(side, CLIPS[side]),
            "out_dir": str(out_dir),
            "ice": self._ice_config if side == "caller" else None,
            "clip_offset": self.clip_offset.get(side, 0.0),
            "opus": list(self.opus),
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


def expand_calls(specs: list[CallSpec], configured_loss: float = 0.0) -> list[Call]:
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
                    talk=spec.talk,
                    setup_timeout=spec.setup_timeout,
                    endpoints={"caller": spec.endpoint.from_.kind, "callee": spec.endpoint.to.kind},
                    ice=spec.ice.model_dump() if spec.ice.configured else {},
                    clip_offset=clip_offsets(call_id) if spec.count > 1 else {},
                    opus=list(spec.opus.key(configured_loss)),
                    speech=spec.speech.paths(),
                    pattern=spec.speech.pattern,
                    marking={
                        side: dict(zip(("dscp", "network_priority"), endpoint.marking(spec.dscp), strict=True))
                        for side, endpoint in (("caller", spec.endpoint.from_), ("callee", spec.endpoint.to))
                    },
                )
            )
    return calls


def clip_offsets(call_id: str) -> dict[str, float]:
    """Where in its clip each side of a call of a ``count: N`` group starts, as a fraction of the loop:
    seeded by the call's id (the same every run), so the group's calls do not all talk in step and
    Opus' variable bitrate does not peak in all of them at once."""
    chooser = random.Random(call_id)
    return {side: round(chooser.random(), 4) for side in SIDES}


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


def side_batches(calls: Iterable[Call], side: str) -> dict[tuple[str, str], list[Call]]:
    """Calls grouped by the node and endpoint kind that serve their ``side``: one request per group."""
    groups: dict[tuple[str, str], list[Call]] = defaultdict(list)
    for call in calls:
        groups[(call.node(side), call.endpoints[side])].append(call)
    return groups
