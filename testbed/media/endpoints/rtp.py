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
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from testbed.codecs import PAYLOAD_TYPES, codec
from testbed.media.encoded_clip import BROWSER_OPUS, encoded_clip, opus_settings
from testbed.media.endpoints.base import Description, EmitEvent, LegSpec, Preparation
from testbed.media.endpoints.legs import each_leg
from testbed.media.light.packets import payload_matrix
from testbed.media.light.streams import FRAME_NS, Clip, LightLeg, StreamEngine
from testbed.media.records import save_sent

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
    import socket

    for address in addresses:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.connect((address, port))
            return address
        except OSError:
            continue
        finally:
            probe.close()
    raise ValueError(f"no route to any of the callee's addresses {addresses}")


class LightEndpoint:
    """Every light leg of one node: one engine (one sending thread, one raw socket) for all."""

    kind: ClassVar[str] = "rtp"

    def __init__(self, emit: EmitEvent):
        self.emit = emit
        self.engine: StreamEngine | None = None
        self.clips: dict[tuple[str, str, Any], Clip] = {}
        self.legs: dict[str, tuple[LegSpec, LightLeg]] = {}
        self.expected = 0
        self.seconds = 0.0
        self.served = 0

    def _clip(self, codec_name: str, clip: str, opus: Any) -> Clip:
        settings = opus_settings(opus)
        key = (codec_name, clip, settings)
        if key not in self.clips:
            self.clips[key] = Clip(*payload_matrix(encoded_clip(codec_name, clip, settings)))
        return self.clips[key]

    async def prepare(self, ahead: Preparation) -> None:
        self._clip(ahead.codec, ahead.clip, ahead.opus)
        self.expected += ahead.legs
        self.seconds = max(self.seconds, ahead.seconds)

    def _engine(self) -> StreamEngine:
        """Started on the first leg, after the agent took its real-time priority (threads inherit it)."""
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
        spec, _ = self.legs.get(leg.call, (None, None))
        if spec is None:
            return
        now = time.time()
        self.emit({"event": "call", "call": leg.call, "state": "connected", "time": now,
                   "setup_s": round(now - leg.created, 4)})  # fmt: skip

    def _add(self, spec: LegSpec) -> LightLeg:
        if spec.call in self.legs:
            raise ValueError(f"call {spec.call!r} exists already")
        Path(spec.out_dir).mkdir(parents=True, exist_ok=True)
        clip = self._clip(spec.codec, spec.clip, spec.opus)
        properties = codec(spec.codec)
        offset = int(spec.clip_offset * len(clip.rows))
        wire = (PAYLOAD_TYPES[properties.name], properties.clock_rate, properties.frame_ticks)
        leg = self._engine().add(spec.call, clip, wire, spec.dscp, offset)
        self.legs[spec.call] = (spec, leg)
        self.served += 1
        return leg

    def _leg(self, call: str) -> LightLeg:
        if call not in self.legs:
            raise ValueError(f"no call {call!r}")
        return self.legs[call][1]

    async def open(self, legs: list[LegSpec]) -> list[Description]:
        async def one(spec: LegSpec) -> Description:
            return {"port": self._add(spec).port}

        return await each_leg([one(spec) for spec in legs])

    async def answer(self, legs: list[LegSpec], remotes: list[Description]) -> list[Description]:
        addresses = node_addresses()

        async def one(spec: LegSpec) -> Description:
            return {"port": self._add(spec).port, "addresses": addresses}

        return await each_leg([one(spec) for spec in legs])

    async def accept(self, calls: list[str], remotes: list[Description]) -> list[dict[str, Any]]:
        engine = self._engine()

        async def one(call: str, remote: Description) -> dict[str, Any]:
            engine.connect(self._leg(call), (_reachable(remote["addresses"], remote["port"]), int(remote["port"])))
            return {}

        return await each_leg([one(call, remote) for call, remote in zip(calls, remotes, strict=True)])

    async def stop_media(self, calls: list[str]) -> list[dict[str, Any]]:
        engine = self._engine()

        async def one(call: str) -> dict[str, Any]:
            return {"stopped_at": engine.stop_media(self._leg(call))}

        return await each_leg([one(call) for call in calls])

    async def quiet_for(self, calls: list[str]) -> list[Any]:
        engine = self._engine()

        async def one(call: str) -> float | None:
            last = engine.last_arrival_ns(self._leg(call))
            return (time.time_ns() - last) / 1e9 if last else None

        return await each_leg([one(call) for call in calls])

    async def hang_up(self, calls: list[str]) -> list[dict[str, Any]]:
        async def one(call: str) -> dict[str, Any]:
            spec, leg = self.legs.pop(call) if call in self.legs else (None, None)
            if spec is None or leg is None:
                raise ValueError(f"no call {call!r}")
            return self._summary(spec, leg)

        return await each_leg([one(call) for call in calls])

    def _summary(self, spec: LegSpec, leg: LightLeg) -> dict[str, Any]:
        """End the leg, write what it sent (``*-sent.npz``) and summarise this side."""
        engine = self._engine()
        engine.stop_media(leg)
        hung_up_at = time.time()
        send_ns = engine.remove(leg)
        count = np.arange(send_ns.size, dtype=np.int64)
        sent_path = Path(spec.out_dir) / f"{spec.call}-{Path(spec.clip).name}-sent.npz"
        save_sent(
            sent_path,
            send_ns,
            (leg.seq0 + count) & 0xFFFF,
            (leg.ts0 + count * leg.ticks) & 0xFFFFFFFF,
            np.full(send_ns.size, leg.ssrc, np.int64),
        )
        lateness = (send_ns - (leg.origin_ns + count * FRAME_NS)) / 1e6
        return {
            "call": spec.call,
            "endpoint": self.kind,
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
            },  # noqa: E501
            "rtcp": {"sent": leg.rtcp_sent, "received": leg.rtcp_received},
            "received_file": None,
            "sent_file": str(sent_path),
            "pacing": self._engine().pacing(lateness),
        }

    async def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.legs.clear()

    def stats(self) -> dict[str, Any]:
        figures = self.engine.stats() if self.engine is not None else {}
        return {"kind": self.kind, "legs_open": len(self.legs), "legs_served": self.served, **figures}
