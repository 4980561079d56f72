"""The aiortc call endpoint: WebRTC audio calls in the node's agent, as a cloud dialer's softphone or
media gateway runs them.

Both ends send at once, each its own reference clip, pre-encoded (``testbed.media.encoded_clip``).
Host candidates unless the call's ``ice`` gives the caller the lab's TURN server (one server: aiortc
takes one, over UDP, TCP or TLS) and a transport policy; DSCP set on the ICE sockets (a relay's socket
to its server too) before ICE starts, ports from the node's ``ip_local_port_range`` (10000-60000).
Received packets are recorded, not decoded (``aiortc_hooks``); the playout model in scoring plays
them out.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any, ClassVar

import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import Packet

from testbed.codecs import FRAME_S
from testbed.media.encoded_clip import BROWSER_OPUS, CLIP_RATE, aiortc_capability, encoded_clip, opus_settings
from testbed.media.endpoints.aiortc_hooks import (
    mark_media_sockets,
    record_received_packets,
    record_sent_packets,
    relay_tcp_info,
    selected_pair,
)
from testbed.media.endpoints.base import Description, EmitEvent, LegSpec, Preparation
from testbed.media.endpoints.legs import LegBatches
from testbed.media.live import LiveCounter
from testbed.media.records import PacketRecord, SentRecord, pacing_summary


class EncodedClipTrack(MediaStreamTrack):
    """Sends a pre-encoded clip as 20 ms packets in real time from the first one asked for, looping,
    until ``stop_media``; notes how late each packet was against its 20 ms clock (the harness's own
    lateness, which must never pass for network jitter)."""

    kind = "audio"

    def __init__(self, payloads: list[bytes], offset: int = 0):
        super().__init__()
        self.payloads = payloads
        self.offset = offset % len(payloads) if payloads else 0  # the first frame sent
        self.frame_samples = int(CLIP_RATE * FRAME_S)
        self.sent = 0
        self.started: float | None = None  # time.time() of the first packet: the clip's origin
        self.stopped_at: float | None = None
        self.lateness_ms: list[float] = []
        self._origin = 0.0

    def stop_media(self) -> None:
        if self.stopped_at is None:
            self.stopped_at = time.time()

    async def recv(self) -> Packet:  # type: ignore[type-arg]  # av's Packet is generic in its stubs only
        if self.stopped_at is not None:
            raise MediaStreamError  # ends aiortc's RTP loop; RTCP and ICE consent go on until hang-up
        if self.started is None:
            self.started = time.time()
            self._origin = time.monotonic()
        else:
            due = self._origin + self.sent * FRAME_S
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.stopped_at is not None:  # stopped while it waited: what stop_media counted is final
                raise MediaStreamError
            self.lateness_ms.append(max(0.0, (time.monotonic() - due) * 1000))
        packet = Packet(self.payloads[(self.offset + self.sent) % len(self.payloads)])
        packet.pts = self.sent * self.frame_samples
        packet.time_base = fractions.Fraction(1, CLIP_RATE)
        self.sent += 1
        return packet

    def pacing(self) -> dict[str, float]:
        return pacing_summary(np.asarray(self.lateness_ms))


def configuration(ice: dict[str, Any] | None) -> RTCConfiguration:
    """The peer connection's ICE servers and policy from the leg's ``ice`` (none: host candidates only).
    TLS to the TURN server is verified against the lab's CA (``SSL_CERT_FILE``, see the agent)."""
    if not ice:
        return RTCConfiguration(iceServers=[])
    servers = [
        RTCIceServer(urls=server["urls"], username=server.get("username"), credential=server.get("credential"))
        for server in ice.get("servers", [])
    ]
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy(ice.get("policy", "all")))


class AiortcLeg:
    """One side of one call: a peer connection sending one clip and recording what it receives."""

    def __init__(self, leg: LegSpec, emit: EmitEvent):
        self.leg = leg
        self.emit = emit
        self.pc = RTCPeerConnection(configuration(leg.ice))
        payloads = encoded_clip(leg.codec, leg.clip, opus_settings(leg.opus))
        self.track = EncodedClipTrack(payloads, int(leg.clip_offset * len(payloads)))
        self.received = PacketRecord()
        self.sent = SentRecord()
        self.live = LiveCounter(aiortc_capability(leg.codec).clockRate)
        self.sink = MediaBlackhole()
        self.created = time.time()
        self.connected_at: float | None = None
        self.ended_at: float | None = None
        self.marked = 0
        self.pair: dict[str, str | None] = {}
        self.timings: dict[str, float] = {}
        self.ice_connected_at: float | None = None
        self.relay_tcp: dict[str, int] = {}
        self.hung_up_at: float | None = None
        self.pc.on("connectionstatechange", self._state_changed)
        self.pc.on("iceconnectionstatechange", self._ice_state_changed)
        self.pc.on("track", self._track)

    # ------------------------------------------------------------ signalling

    async def offer(self) -> Description:
        transceiver = self.pc.addTransceiver(self.track, direction="sendrecv")
        transceiver.setCodecPreferences([aiortc_capability(self.leg.codec)])
        return await self._describe(await self.pc.createOffer())

    async def answer(self, remote: Description) -> Description:
        await self.pc.setRemoteDescription(RTCSessionDescription(remote["sdp"], "offer"))
        self.pc.addTrack(self.track)
        for transceiver in self.pc.getTransceivers():
            transceiver.setCodecPreferences([aiortc_capability(self.leg.codec)])
        return await self._describe(await self.pc.createAnswer())

    async def _describe(self, description: RTCSessionDescription) -> Description:
        """Set our side's description (which gathers the ICE sockets), then mark and watch those sockets."""
        started = time.time()
        await self.pc.setLocalDescription(description)  # gathers: host sockets, TURN allocation
        self.timings["gather_s"] = round(time.time() - started, 4)
        self.marked = mark_media_sockets(self.pc, self.leg.dscp)
        record_sent_packets(self.pc, self.sent)
        return {"sdp": self.pc.localDescription.sdp}

    async def accept(self, remote: Description) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(remote["sdp"], "answer"))

    async def stop_media(self) -> float | None:
        self.track.stop_media()
        return self.track.stopped_at

    async def quiet_for(self) -> float | None:
        if not self.received.arrival_ns:
            return None
        return (time.time_ns() - self.received.arrival_ns[-1]) / 1e9

    def sent_packets(self) -> int | None:
        return self.track.sent

    def received_packets(self) -> int | None:
        return len(set(self.received.seq))  # a duplicate is not a packet more

    def last_sent_seq(self) -> int | None:
        # known once every packet the track handed over has reached the socket (at once, in practice)
        return self.sent.seq[-1] if self.sent.seq and len(self.sent.seq) == self.track.sent else None

    def last_received_seq(self) -> int | None:
        return self.received.seq[-1] if self.received.seq else None

    # ------------------------------------------------------------ media and state

    def _track(self, track: MediaStreamTrack) -> None:
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track:
                record_received_packets(transceiver.receiver, self.received)
        self.sink.addTrack(track)  # consume the (empty) frame queue so it never grows

    async def _ice_state_changed(self) -> None:
        if self.pc.iceConnectionState == "completed" and self.ice_connected_at is None:
            self.ice_connected_at = time.time()
            self.timings["ice_s"] = round(self.ice_connected_at - self.created, 4)

    async def _state_changed(self) -> None:
        state = self.pc.connectionState
        now = time.time()
        if state == "connected" and self.connected_at is None:
            self.connected_at = now
            if self.ice_connected_at is not None:
                self.timings["dtls_s"] = round(now - self.ice_connected_at, 4)
            self.pair = selected_pair(self.pc)
            await self.sink.start()
            self._event("connected", setup_s=round(now - self.created, 4))
        elif state in ("failed", "closed") and self.ended_at is None:
            self.ended_at = now
            if state == "failed":
                self._event("dropped" if self.connected_at else "failed")

    def _event(self, state: str, **values: Any) -> None:
        self.emit({"event": "call", "call": self.leg.call, "state": state, "time": time.time(), **values})

    async def hang_up(self) -> dict[str, Any]:
        """End the call, write both packet records, and summarise this side."""
        self.track.stop_media()
        self.hung_up_at = time.time()  # what arrives after this is not recorded
        self.relay_tcp = relay_tcp_info(self.pc)  # before close: the relay's socket goes with it
        await self.sink.stop()
        await self.pc.close()
        received_path = self.leg.record_path("received.npz")
        sent_path = self.leg.record_path("sent.npz")
        self.received.save(received_path)
        self.sent.save(sent_path)
        return {
            "call": self.leg.call,
            "endpoint": AiortcEndpoint.kind,
            "codec": self.leg.codec,
            "dscp": self.leg.dscp,
            "clip": self.leg.clip,
            "sent_ssrc": self.sent.ssrc[0] if self.sent.ssrc else None,
            "clip_started": self.track.started,
            "frames_sent": self.track.sent,
            "clip_frames": len(self.track.payloads),
            "clip_offset_frames": self.track.offset,
            "opus": list(opus_settings(self.leg.opus) or BROWSER_OPUS) if self.leg.codec == "opus" else [],
            "packets_received": len(self.received.seq),
            "packets_sent": len(self.sent.seq),
            "connected_at": self.connected_at,
            "setup_s": None if self.connected_at is None else round(self.connected_at - self.created, 4),
            "media_stopped_at": self.track.stopped_at,
            "hung_up_at": self.hung_up_at,
            "sockets_marked": self.marked,
            "candidate_pair": self.pair,
            "timings": self.timings,
            "relay_tcp": self.relay_tcp,
            "received_file": str(received_path),
            "sent_file": str(sent_path),
            "pacing": self.track.pacing(),
        }


class AiortcEndpoint(LegBatches[AiortcLeg]):
    """Every aiortc leg of one node, in the agent's event loop."""

    kind: ClassVar[str] = "aiortc"

    def __init__(self, emit: EmitEvent):
        super().__init__()
        self.emit = emit

    async def prepare(self, ahead: Preparation) -> None:
        encoded_clip(ahead.codec, ahead.clip, opus_settings(ahead.opus))

    def new_leg(self, leg: LegSpec) -> AiortcLeg:
        return AiortcLeg(leg, self.emit)

    def live(self) -> list[dict[str, Any]]:
        return [
            {"call": call, "role": leg.leg.role, **leg.live.snapshot(leg.received, leg.sent)}
            for call, leg in self.legs.items()
        ]

    async def close(self) -> None:
        """The agent is ending: hang up whatever is still up (records are still written)."""
        for call in list(self.legs):
            try:
                await asyncio.wait_for(self.legs.pop(call).hang_up(), 5)
            except Exception:
                pass

    def stats(self) -> dict[str, Any]:
        return {"kind": self.kind, "legs_open": len(self.legs), "legs_served": self.served}
