"""What the workload needs from a call endpoint, whatever it is (aiortc in the agent, a browser, a light
RTP sender). The interface is not WebRTC's: a leg is one side of one call, and the harness relays two
opaque descriptions between the sides (an SDP for WebRTC endpoints, a transport address for endpoints
without signalling). One endpoint object serves every leg of its kind in one node, so ``count: N``
calls are one batch for one process. A call ends in three steps: stop the media, let the path drain
(until every leg has heard nothing for a while, bounded), hang up (only then are the records written),
so packets in flight at hang-up are not lost packets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

Description = dict[str, Any]  # opaque to the harness: {"sdp": ...} or {"address": ..., "port": ...}
EmitEvent = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class LegSpec:
    """One side of one call as the harness asks an endpoint to serve it."""

    call: str
    role: str  # caller | callee
    codec: str
    dscp: int  # what an endpoint that sets DSCP itself marks (aiortc)
    clip: str  # the reference clip this side sends: client | gateway
    out_dir: str  # where the side's records go (a host directory visible inside the node)
    network_priority: str = "unset"  # what a browser's audio sender asks for (RTCRtpEncodingParameters)
    # the caller's ICE: {"servers": [{"urls", "username", "credential"}], "policy": all|relay, ...}
    ice: dict[str, Any] | None = None
    clip_offset: float = 0.0  # where in the clip to start, as a fraction of its loop (aiortc)
    opus: tuple[int, bool, int] | list[Any] | None = None  # aiortc's Opus: bitrate, in-band FEC, expected loss

    def record_path(self, what: str) -> Path:
        """Where this side writes one of its records (``sent.npz``, ``received.npz``, ``played.npz``...):
        ``OUT_DIR/CALL-CLIP-WHAT``, the clip's last path part since a user's reference is a path prefix."""
        return Path(self.out_dir) / f"{self.call}-{Path(self.clip).name}-{what}"


@dataclass(frozen=True)
class Preparation:
    """What an endpoint loads before the workload's clock starts: ``legs`` legs of this codec and clip
    will follow, the longest sending ``seconds``, Opus encoded with ``opus``, each starting its clip at
    its ``offsets`` entry (a fraction of the loop; endpoints that start the clip per leg ignore them)."""

    codec: str
    clip: str
    legs: int = 1
    seconds: float = 0.0
    opus: list[Any] | None = None
    offsets: list[float] | None = None


class Endpoint(Protocol):
    """One kind of call endpoint inside one node. Call state changes are reported through ``emit`` as
    ``{"event": "call", "call": ID, "state": connected|failed|dropped, "time": EPOCH}``. Batch methods
    answer per leg, in order; a leg that failed answers ``{"error": "..."}`` without failing the rest."""

    kind: ClassVar[str]

    async def prepare(self, ahead: Preparation) -> None:
        """Load what sending needs (the encoded clip; a browser per leg) so that none of it counts as a
        call's setup time."""

    async def open(self, legs: list[LegSpec]) -> list[Description]:
        """Callers: create the legs and describe them (the offers)."""

    async def answer(self, legs: list[LegSpec], remotes: list[Description]) -> list[Description]:
        """Callees: create the legs from the callers' descriptions and describe them (the answers)."""

    async def accept(self, calls: list[str], remotes: list[Description]) -> list[dict[str, Any]]:
        """Callers: complete the legs with the callees' descriptions; media starts when connected."""

    async def stop_media(self, calls: list[str]) -> list[dict[str, Any]]:
        """Stop sending (the leg still receives); each result says when (``stopped_at``, epoch s)."""

    async def quiet_for(self, calls: list[str]) -> list[Any]:
        """Per leg: seconds since its last RTP packet arrived (None: none arrived). Between stopping the
        media and hanging up the harness waits until every leg has been quiet a while: what was still
        on the path has arrived by then, and is not lost."""

    async def hang_up(self, calls: list[str]) -> list[dict[str, Any]]:
        """End the legs, write their records and return each one's summary (``results.LegSummary``)."""

    async def close(self) -> None:
        """The agent is ending: hang up every leg still open."""

    def stats(self) -> dict[str, Any]:
        """Per-endpoint statistics: legs served, sender pacing, whatever the kind can say."""

    def live(self) -> list[dict[str, Any]]:
        """Running counts per open leg for the live view (``media.live``: call, role, sent, received,
        anchors, jitter); a kind that keeps no packet records says nothing (an empty list)."""
