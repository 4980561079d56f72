"""One end of a WebRTC audio call (aiortc), as a cloud dialer's softphone or media gateway runs it.

Both ends send at once: each plays its own reference clip (``client`` or ``gateway``), so directions
cannot be confused. Host candidates only (no STUN), DSCP set on the media sockets, ports from the
node's ``ip_local_port_range`` (10000-60000 by default).

What the listener would receive is recorded before aiortc's own jitter buffer touches it: aiortc's
receiver stalls on a lost packet, drops the frames before the hole, has no concealment and never
releases its last packets (DESIGN.md), so its playback is never what gets scored. A small hook on
``RTCRtpReceiver._handle_rtp_packet`` (a private method; pinned by aiortc==1.16.0 in pyproject.toml)
keeps every decrypted RTP packet with its arrival time for the playout model of the scoring step.
"""

from __future__ import annotations

import asyncio
import fractions
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.codecs import get_encoder
from aiortc.contrib.media import MediaBlackhole
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame, Packet

from testbed.media.clips import load_clip

CODEC_MIME = {"opus": "audio/opus", "pcmu": "audio/PCMU", "pcma": "audio/PCMA", "g722": "audio/G722"}
FRAME_SECONDS = 0.020
CLIP_RATE = 16000
IP_TOS = 1


def clip_frames(samples: np.ndarray, rate: int = CLIP_RATE) -> Iterator[AudioFrame]:
    """The clip as 20 ms audio frames (the last one padded with the clip's start, as the loop goes on)."""
    size = int(rate * FRAME_SECONDS)
    count = -(-len(samples) // size)
    padded = np.concatenate([samples, samples[: count * size - len(samples)]]).astype(np.int16)
    for index in range(count):
        frame = AudioFrame(format="s16", layout="mono", samples=size)
        frame.planes[0].update(padded[index * size : (index + 1) * size].tobytes())
        frame.sample_rate = rate
        frame.pts = index * size
        frame.time_base = fractions.Fraction(1, rate)
        yield frame


_ENCODED: dict[tuple[str, str], list[bytes]] = {}


def encoded_clip(codec: str, clip_role: str) -> list[bytes]:
    """The clip encoded once per codec with aiortc's own encoder, 20 ms per payload (cached per process).

    Encoding once and sending the payloads keeps a call's CPU cost to packet handling, so one 2-core
    machine carries many concurrent calls; the bytes on the wire are what aiortc would have sent.
    """
    key = (codec, clip_role)
    if key not in _ENCODED:
        capability = codec_capability(codec)[0]
        encoder = get_encoder(
            RTCRtpCodecParameters(
                mimeType=capability.mimeType,
                clockRate=capability.clockRate,
                channels=capability.channels,
                payloadType=0,
            )
        )
        payloads = []
        for frame in clip_frames(load_clip(clip_role, CLIP_RATE)):
            encoded, _ = encoder.encode(frame)
            payloads.extend(encoded)
        _ENCODED[key] = payloads
    return _ENCODED[key]


class EncodedClipTrack(MediaStreamTrack):
    """Sends a pre-encoded clip as 20 ms packets in real time from the first one asked for, looping."""

    kind = "audio"

    def __init__(self, payloads: list[bytes]):
        super().__init__()
        self.payloads = payloads
        self.frame_samples = int(CLIP_RATE * FRAME_SECONDS)
        self.sent = 0
        self.started: float | None = None  # time.time() of the first packet: the clip's origin

    async def recv(self) -> Packet:
        if self.started is None:
            self.started = time.time()
            self._origin = time.monotonic()
        else:
            wait = self._origin + self.sent * FRAME_SECONDS - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        packet = Packet(self.payloads[self.sent % len(self.payloads)])
        packet.pts = self.sent * self.frame_samples
        packet.time_base = fractions.Fraction(1, CLIP_RATE)
        self.sent += 1
        return packet


@dataclass
class PacketRecord:
    """The received RTP packets of one call direction, as the listener's device got them."""

    arrival_ns: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    rtp_ts: list[int] = field(default_factory=list)
    ssrc: list[int] = field(default_factory=list)
    pt: list[int] = field(default_factory=list)
    marker: list[int] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)

    def add(self, packet: Any) -> None:
        self.arrival_ns.append(time.time_ns())
        self.seq.append(packet.sequence_number)
        self.rtp_ts.append(packet.timestamp)
        self.ssrc.append(packet.ssrc)
        self.pt.append(packet.payload_type)
        self.marker.append(int(packet.marker))
        self.payloads.append(bytes(packet.payload))

    def save(self, path: Path) -> None:
        sizes = np.array([len(p) for p in self.payloads], dtype=np.int32)
        np.savez(
            path,
            arrival_ns=np.array(self.arrival_ns, dtype=np.int64),
            seq=np.array(self.seq, dtype=np.int32),
            rtp_ts=np.array(self.rtp_ts, dtype=np.int64),
            ssrc=np.array(self.ssrc, dtype=np.int64),
            pt=np.array(self.pt, dtype=np.int16),
            marker=np.array(self.marker, dtype=np.int8),
            payload_sizes=sizes,
            payload=np.frombuffer(b"".join(self.payloads), dtype=np.uint8),
        )


def record_received_packets(receiver: RTCRtpReceiver, record: PacketRecord, decode: bool = False) -> None:
    """Keep every decrypted RTP packet the receiver handles (the documented aiortc 1.16 hook).

    Without ``decode`` the packets stop here: aiortc's jitter buffer and decoder are never what gets
    scored, and skipping them halves a call's CPU. ICE consent (which detects dropped calls) and
    sending are unaffected; only aiortc's receiver statistics stay empty.
    """
    original = receiver._handle_rtp_packet

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        record.add(packet)
        if decode:
            await original(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


@dataclass
class SentRecord:
    """When each RTP packet left the application (before the node's own qdiscs and impairment engine,
    which a tap on the sender's interface would only see afterwards)."""

    send_ns: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    rtp_ts: list[int] = field(default_factory=list)
    ssrc: list[int] = field(default_factory=list)

    def save(self, path: Path) -> None:
        np.savez(
            path,
            send_ns=np.array(self.send_ns, dtype=np.int64),
            seq=np.array(self.seq, dtype=np.int32),
            rtp_ts=np.array(self.rtp_ts, dtype=np.int64),
            ssrc=np.array(self.ssrc, dtype=np.int64),
        )


RTP_HEADER = struct.Struct("!BBHII")


def record_sent_packets(pc: RTCPeerConnection, record: SentRecord) -> None:
    """Note every outgoing RTP packet (RTCP excluded) as it is handed to SRTP and the socket (aiortc 1.16)."""
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        if dtls is None or getattr(dtls, "_testbed_recorded", False):
            continue
        original = dtls._send_rtp

        async def send(data: bytes, original: Callable = original) -> None:
            if len(data) >= 12 and not 64 <= (data[1] & 0x7F) <= 95:  # RTCP types 192-223 (RFC 5761)
                _, _, seq, timestamp, ssrc = RTP_HEADER.unpack_from(data)
                record.send_ns.append(time.time_ns())
                record.seq.append(seq)
                record.rtp_ts.append(timestamp)
                record.ssrc.append(ssrc)
            await original(data)

        dtls._send_rtp = send  # type: ignore[method-assign]
        dtls._testbed_recorded = True


def mark_media_sockets(pc: RTCPeerConnection, dscp: int) -> int:
    """Set the DSCP on the ICE sockets (aiortc never sets IP_TOS). Returns how many were marked."""
    marked = 0
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        connection = getattr(dtls.transport, "_connection", None) if dtls else None
        for protocol in getattr(connection, "_protocols", []):
            sock = protocol.transport.get_extra_info("socket") if protocol.transport else None
            if sock is not None and sock.family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, IP_TOS, dscp << 2)
                marked += 1
    return marked


def codec_capability(codec: str):
    mime = CODEC_MIME[codec]
    return [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == mime]


class CallEndpoint:
    """One side of one call. The harness relays offer and answer between the two sides."""

    def __init__(
        self,
        call_id: str,
        codec: str,
        dscp: int,
        clip_role: str,
        out_dir: Path,
        on_event: Callable[[dict[str, Any]], None],
    ):
        self.call_id = call_id
        self.codec = codec
        self.dscp = dscp
        self.clip_role = clip_role
        self.out_dir = out_dir
        self.on_event = on_event
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = EncodedClipTrack(encoded_clip(codec, clip_role))
        self.received = PacketRecord()
        self.sent = SentRecord()
        self.sink = MediaBlackhole()
        self.created = time.time()
        self.connected_at: float | None = None
        self.ended_at: float | None = None
        self.state = "new"
        self.pc.on("connectionstatechange", self._state_changed)
        self.pc.on("track", self._track)

    # ------------------------------------------------------------ signalling

    async def offer(self) -> str:
        transceiver = self.pc.addTransceiver(self.track, direction="sendrecv")
        transceiver.setCodecPreferences(codec_capability(self.codec))
        return await self._describe(await self.pc.createOffer())

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        self.pc.addTrack(self.track)
        for transceiver in self.pc.getTransceivers():
            transceiver.setCodecPreferences(codec_capability(self.codec))
        return await self._describe(await self.pc.createAnswer())

    async def _describe(self, description: RTCSessionDescription) -> str:
        """Set our side's description (which gathers the ICE sockets), then mark and watch those sockets."""
        await self.pc.setLocalDescription(description)
        self._marked = mark_media_sockets(self.pc, self.dscp)
        record_sent_packets(self.pc, self.sent)
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))

    # ------------------------------------------------------------ media and state

    def _track(self, track: MediaStreamTrack) -> None:
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track:
                record_received_packets(transceiver.receiver, self.received)
        self.sink.addTrack(track)  # aiortc decodes anyway; consume the frames so its queue stays empty

    async def _state_changed(self) -> None:
        state = self.pc.connectionState
        now = time.time()
        if state == "connected" and self.connected_at is None:
            self.connected_at = now
            await self.sink.start()
            self._event("connected", setup_s=round(now - self.created, 4))
        elif state in ("failed", "closed") and self.ended_at is None:
            self.ended_at = now
            if state == "failed":
                self._event("dropped" if self.connected_at else "failed")
        self.state = state

    def _event(self, kind: str, **values: Any) -> None:
        self.on_event({"event": "call", "call": self.call_id, "state": kind, "time": time.time(), **values})

    async def hangup(self) -> dict[str, Any]:
        """End the call, write the received packets, and summarise this side."""
        await self.sink.stop()
        await self.pc.close()
        path = self.out_dir / f"{self.call_id}-{self.clip_role}-received.npz"
        self.received.save(path)
        sent_path = self.out_dir / f"{self.call_id}-{self.clip_role}-sent.npz"
        self.sent.save(sent_path)
        return {
            "call": self.call_id,
            "codec": self.codec,
            "dscp": self.dscp,
            "clip": self.clip_role,
            "sent_ssrc": self.sent.ssrc[0] if self.sent.ssrc else None,
            "clip_started": self.track.started,
            "frames_sent": self.track.sent,
            "clip_frames": len(self.track.payloads),
            "packets_received": len(self.received.seq),
            "connected_at": self.connected_at,
            "setup_s": None if self.connected_at is None else round(self.connected_at - self.created, 4),
            "sockets_marked": getattr(self, "_marked", 0),
            "received_file": str(path),
            "sent_file": str(sent_path),
            "packets_sent": len(self.sent.seq),
        }
