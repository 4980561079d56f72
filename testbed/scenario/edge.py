"""The cloud side of an office edge in the scenario: the vendor's media prefix, its TURN server, its
signalling service, and how each call's ICE uses them.

A dialer's cloud answers from one address range (the *media prefix*: media gateways and TURN servers),
runs a STUN/TURN server (coturn here) on UDP/TCP 3478 and TLS 443, and carries signalling over HTTPS or
WSS on TCP 443. Calls name the TURN transports their client may use and whether it must relay.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from testbed.scenario.types import Name, Strict

__all__ = ["EdgeSpec", "IceSpec", "SignallingSpec", "TurnSpec", "TurnTransport"]

TurnTransport = Literal["udp", "tcp", "tls"]
TURN_PORTS = {"udp": 3478, "tcp": 3478, "tls": 443}
MEDIA_PORTS = (10000, 60000)  # what the vendors open for media, relay ports included


class TurnSpec(Strict):
    """coturn in ``node``, started by the harness with a generated configuration and a lab CA per run."""

    node: Name
    relay_ports: str = Field(
        default="49152-49999",
        pattern=r"^\d{1,5}-\d{1,5}$",
        description="the relay's UDP ports towards peers; inside 10000-60000 as the vendors' rules expect",
    )
    tls_port: int = Field(default=443, ge=1, le=65535, description="TURN over TLS (the fallback that passes proxies)")

    @field_validator("relay_ports")
    @classmethod
    def _inside_media_range(cls, value: str) -> str:
        low, high = (int(part) for part in value.split("-"))
        if not MEDIA_PORTS[0] <= low <= high <= MEDIA_PORTS[1]:
            raise ValueError(f"relay_ports {value} must lie inside {MEDIA_PORTS[0]}-{MEDIA_PORTS[1]}, low-high")
        return value

    @property
    def relay_range(self) -> tuple[int, int]:
        low, high = (int(part) for part in self.relay_ports.split("-"))
        return low, high


class SignallingSpec(Strict):
    """A WSS signalling service on TCP ``port`` of ``node``: offers and answers cross the lab as a
    dialer's do, so a blocked 443 or a full queue delays or fails call setup."""

    node: Name
    port: int = Field(default=443, ge=1, le=65535)


class EdgeSpec(Strict):
    """The vendor's cloud as the office sees it."""

    media_prefix: ipaddress.IPv4Network | None = Field(
        default=None,
        description="the vendor's media range (its gateways' and TURN servers' subnet), e.g. 203.0.113.0/24; "
        "router templates' firewall rules may say 'media' for it",
    )
    turn: TurnSpec | None = Field(default=None, description="a STUN/TURN server (coturn) in a node beyond the WAN")
    signalling: SignallingSpec | None = Field(
        default=None, description="carry offers and answers over WSS through the lab (default: the harness relays)"
    )

    @model_validator(mode="after")
    def _ports_apart(self) -> EdgeSpec:
        if (
            self.turn is not None
            and self.signalling is not None
            and self.turn.node == self.signalling.node
            and self.signalling.port in (self.turn.tls_port, 3478)
        ):
            raise ValueError(
                f"signalling on port {self.signalling.port} of node {self.turn.node!r} collides with the TURN "
                "server there; put the signalling service on another node (e.g. the gateway) or port"
            )
        return self


class IceSpec(Strict):
    """How a call's caller (the office client) gathers and chooses candidates.

    ``turn`` lists the TURN transports offered to the caller's endpoint (the edge's TURN server): a
    browser tries them all (UDP, then TCP, then TLS on 443); aiortc takes one TURN server, so an aiortc
    caller gets exactly one. ``policy: relay`` allows relayed candidates only (iceTransportPolicy).
    The callee (the media gateway, public) always uses its host candidates.
    """

    turn: list[TurnTransport] = Field(default_factory=list, description="TURN transports offered: udp, tcp, tls")
    stun: bool = Field(default=False, description="also gather a server-reflexive candidate from the edge's STUN")
    policy: Literal["all", "relay"] = Field(default="all", description="relay: only relayed candidates")

    @field_validator("turn", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _relay_needs_turn(self) -> IceSpec:
        if self.policy == "relay" and not self.turn:
            raise ValueError("policy relay needs a TURN transport (turn: udp, tcp or tls)")
        if len(set(self.turn)) != len(self.turn):
            raise ValueError("turn lists a transport twice")
        return self

    def check_caller(self, kind: str) -> None:
        if kind == "rtp" and self.configured:
            raise ValueError("ice is for WebRTC callers; the light rtp endpoint has no ICE (plain RTP to an address)")
        if kind == "aiortc" and len(self.turn) > 1:
            raise ValueError(
                f"ice.turn lists {', '.join(self.turn)}, but the caller is aiortc, which uses one TURN server: "
                "choose one transport (the automatic UDP -> TCP -> TLS fallback is a browser's: from: chromium)"
            )

    @property
    def configured(self) -> bool:
        return bool(self.turn or self.stun or self.policy != "all")
