"""A call side's endpoint in the scenario: which kind serves it and how it marks its packets."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from testbed.scenario.types import Dscp, Strict

__all__ = ["CallEndpoints", "EndpointKind", "EndpointSide", "NetworkPriority"]

EndpointKind = Literal["aiortc", "chromium", "rtp"]  # the kinds of testbed.media.endpoints.KINDS
NetworkPriority = Literal["unset", "very-low", "low", "medium", "high"]


class EndpointSide(Strict):
    """One side's endpoint and how it marks its packets: aiortc sets a DSCP on its sockets; a browser
    marks what its audio sender's ``networkPriority`` asks of Chromium (``unset``: a page that never
    asks), and the taps show what really went on the wire."""

    kind: EndpointKind = "aiortc"
    dscp: Dscp | None = Field(
        default=None, description="aiortc: DSCP of this side's packets (default: the call's dscp)"
    )
    network_priority: NetworkPriority | None = Field(
        default=None, description="chromium: the audio sender's networkPriority (default high, as dialer SDKs set it)"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        """``from: chromium`` is ``from: {kind: chromium}``."""
        return {"kind": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _marking_fits_kind(self) -> EndpointSide:
        if self.kind == "chromium" and self.dscp is not None:
            raise ValueError(
                "a chromium side cannot be given a dscp: a browser marks what its audio sender's "
                "networkPriority asks for (network_priority: unset | very-low | low | medium | high)"
            )
        if self.kind != "chromium" and self.network_priority is not None:
            raise ValueError(f"network_priority is a browser's setting; an {self.kind} side takes dscp")
        return self

    def marking(self, call_dscp: int) -> tuple[int, str]:
        """(DSCP this side sets itself, networkPriority it asks for)."""
        if self.kind == "chromium":
            return 0, self.network_priority or "high"
        return (call_dscp if self.dscp is None else self.dscp), "unset"


class CallEndpoints(Strict):
    """Which call endpoint serves each side: the caller (``from``) and the callee (``to``)."""

    from_: EndpointSide = Field(default_factory=EndpointSide, alias="from", description="the caller's endpoint")
    to: EndpointSide = Field(default_factory=EndpointSide, description="the callee's endpoint")

    @model_validator(mode="after")
    def _light_pairs_with_light(self) -> CallEndpoints:
        """The light endpoint speaks plain RTP to a transport address, not WebRTC: both sides or neither."""
        kinds = (self.from_.kind, self.to.kind)
        if "rtp" in kinds and kinds != ("rtp", "rtp"):
            raise ValueError(
                f"endpoint from: {kinds[0]}, to: {kinds[1]}: the light rtp endpoint sends plain RTP (no ICE, "
                "DTLS or SRTP), so it calls another rtp side only; give both sides rtp, or neither"
            )
        return self
