"""The light call endpoint (``rtp``): plain RTP over UDP carrying the same pre-encoded clip payloads
as the aiortc endpoint, without WebRTC's per-call machinery (no ICE, DTLS or SRTP; packets padded to
SRTP's size), so one 2-core machine carries hundreds of calls (``testbed.media.light``).

Signalling is two transport addresses: the caller offers its port, the callee answers with its
addresses and port; the caller sends to the callee at once and the callee answers wherever the
caller's packets come from (through a NAT: the router's public address and mapped port). A side is
connected when it sends: the caller on ``accept``, the callee on its first packet. What arrived is
recorded by the taps, not here: scoring reads the listener's tap (``testbed.rescore``).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, ClassVar

import numpy as np

from testbed.codecs import PAYLOAD_TYPES, codec
from testbed.media.encoded_clip import BROWSER_OPUS, encoded_clip, opus_settings
from testbed.media.endpoints.base import Description, EmitEvent, LegSpec, Preparation
from testbed.media.endpoints.legs import LegBatches, Uncounted
from testbed.media.light.packets import payload_matrix
from testbed.media.light.streams import FRAME_NS, Clip, LightLeg, StreamEngine, route_source
from testbed.media.records import pacing_summary, save_sent

__all__ = ["LightEndpoint", "node_addresses"]

SIOCGIFADDR = 0x8915
SWITCH_INTERVAL_S = 0.0005  # the sending thread waits at most this long for the GIL (default 5 ms)


def node_addresses() -> list[str]:
    """This node's IPv4 addresses (loopback left out): what a callee offers its caller. Read with the
    SIOCGIFADDR ioctl per interface: pyroute2's netlink client runs its own event loop, which the
    agent's running loop refuses."""
    import fcntl
    import socket
    import struct

    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            try:
                answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:  # no IPv4 address
                continue
            address = socket.inet_ntoa(answer[20:24])
            if not address.startswith("127."):
                found.append(address)
    return found


def _reachable(addresses: list[str], port: int) -> str:
    """The first of the callee's addresses this node has a route to."""
    for address in addresses:
        try:
            route_source(address, port)
        except OSError:
            continue
        return address
    raise ValueError(f"no route to any of the callee's addresses {addresses}")


class RtpLeg(Uncounted):
    """One side of one call: its stream in the node's engine, described by a transport address."""

    def __init__(self, spec: LegSpec, endpoint: LightEndpoint):
        self.spec = spec
        self.endpoint = endpoint
        self.engine = endpoint.engine_started()
        clip = endpoint.clip(spec.codec, spec.clip, spec.opus)
        properties = codec(spec.codec)
        wire = (PAYLOAD_TYPES[properties.name], properties.clock_rate, properties.frame_ticks)
        self.stream = self.engine.add(spec.call, clip, wire, spec.dscp, int(spec.clip_offset * len(clip.rows)))

    async def offer(self) -> Description:
        return {"port": self.stream.port}

    async def answer(self, remote: Description) -> Description:
        return {"port": self.stream.port, "addresses": self.endpoint.addresses()}

    async def accept(self, remote: Description) -> None:
        port = int(remote["port"])
        self.engine.connect(self.stream, (_reachable(remote["addresses"], port), port))

    async def stop_media(self) -> float | None:
        return self.engine.stop_media(self.stream)

    async def quiet_for(self) -> float | None:
        last = self.engine.last_arrival_ns(self.stream)
        return (time.time_ns() - last) / 1e9 if last else None

    async def hang_up(self) -> dict[str, Any]:
        """End the leg, write what it sent (``*-sent.npz``) and summarise this side."""
        spec, leg = self.spec, self.stream
        self.engine.stop_media(leg)
        hung_up_at = time.time()
        send_ns, lateness = self.engine.remove(leg)
        count = np.arange(send_ns.size, dtype=np.int64)
        sent_path = spec.record_path("sent.npz")
        save_sent(
            sent_path,
            send_ns,
            (leg.seq0 + count) & 0xFFFF,
            (leg.ts0 + count * leg.ticks) & 0xFFFFFFFF,
            np.full(send_ns.size, leg.ssrc, np.int64),
        )
        return {
            "call": spec.call,
            "endpoint": LightEndpoint.kind,
            "codec": spec.codec,
            "dscp": spec.dscp,
            "clip": spec.clip,
            "sent_ssrc": leg.ssrc,
            "clip_started": leg.started_ns / 1e9 if leg.started_ns else None,
            "frames_sent": int(send_ns.size),
            "clip_frames": len(leg.clip.rows),
            "clip_offset_frames": leg.offset,
            "opus": list(opus_settings(spec.opus) or BROWSER_OPUS) if spec.codec == "opus" else [],
            "packets_received": leg.received,
            "packets_sent": int(send_ns.size),
            "connected_at": leg.connected_at,
            "setup_s": None if leg.connected_at is None else round(leg.connected_at - leg.created, 4),
            "media_stopped_at": leg.stopped_at,
            "hung_up_at": hung_up_at,
            "sockets_marked": 1,
            "candidate_pair": {
                "local_port": str(leg.port),
                "remote": f"{leg.peer[0]}:{leg.peer[1]}" if leg.peer else None,
            },
            "rtcp": {"sent": leg.rtcp_sent, "received": leg.rtcp_received},
            "received_file": None,
            "sent_file": str(sent_path),
            "pacing": pacing_summary(lateness),
        }


class LightEndpoint(LegBatches[RtpLeg]):
    """Every light leg of one node: one engine (one sending thread, one raw socket) for all."""

    kind: ClassVar[str] = "rtp"

    def __init__(self, emit: EmitEvent):
        super().__init__()
        self.emit = emit
        self.engine: StreamEngine | None = None
        self.clips: dict[tuple[str, str, Any], Clip] = {}
        self._addresses: list[str] | None = None
        self.expected = 0
        self.seconds = 0.0

    def clip(self, codec_name: str, clip: str, opus: Any) -> Clip:
        """The clip encoded for ``codec_name`` as payload rows, once per endpoint."""
        settings = opus_settings(opus)
        key = (codec_name, clip, settings)
        if key not in self.clips:
            self.clips[key] = Clip(*payload_matrix(encoded_clip(codec_name, clip, settings)))
        return self.clips[key]

    def addresses(self) -> list[str]:
        """The node's addresses, read once: what every callee leg offers."""
        if self._addresses is None:
            self._addresses = node_addresses()
        return self._addresses

    async def prepare(self, ahead: Preparation) -> None:
        self.clip(ahead.codec, ahead.clip, ahead.opus)
        self.expected += ahead.legs
        self.seconds = max(self.seconds, ahead.seconds)

    def engine_started(self) -> StreamEngine:
        """Started on the first leg, after the agent took its real-time priority (the thread takes it too)."""
        if self.engine is None:
            loop = asyncio.get_running_loop()
            sys.setswitchinterval(SWITCH_INTERVAL_S)
            frames = int((self.seconds + 5) * 1e9 / FRAME_NS)

            def connected(leg: LightLeg) -> None:  # from the sending thread
                loop.call_soon_threadsafe(self._connected, leg)

            self.engine = StreamEngine(connected, max(self.expected, 16), frames)
            self.engine.start()
        return self.engine

    def _connected(self, leg: LightLeg) -> None:
        if leg.call not in self.legs:
            return
        now = time.time()
        self.emit({"event": "call", "call": leg.call, "state": "connected", "time": now,
                   "setup_s": round(now - leg.created, 4)})  # fmt: skip

    def new_leg(self, leg: LegSpec) -> RtpLeg:
        return RtpLeg(leg, self)

    async def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.legs.clear()

    def stats(self) -> dict[str, Any]:
        figures = self.engine.stats() if self.engine is not None else {}
        return {"kind": self.kind, "legs_open": len(self.legs), "legs_served": self.served, **figures}
