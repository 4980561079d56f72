"""The packet files a call side writes (``calls/*-sent.npz``, ``*-received.npz``): every endpoint kind
writes the same format, so scoring never knows which endpoint sent or heard a packet."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


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
        """``packet``: anything with RTP fields named as aiortc's ``RtpPacket`` names them."""
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


@dataclass
class SentRecord:
    """When each RTP packet left the application (before the node's own qdiscs and impairment engine,
    which a tap on the sender's interface would only see afterwards)."""

    send_ns: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    rtp_ts: list[int] = field(default_factory=list)
    ssrc: list[int] = field(default_factory=list)

    def add(self, seq: int, timestamp: int, ssrc: int) -> None:
        self.send_ns.append(time.time_ns())
        self.seq.append(seq)
        self.rtp_ts.append(timestamp)
        self.ssrc.append(ssrc)

    def save(self, path: Path) -> None:
        save_sent(path, np.array(self.send_ns), np.array(self.seq), np.array(self.rtp_ts), np.array(self.ssrc))


def pacing_summary(lateness_ms: np.ndarray) -> dict[str, float]:
    """A sender's lateness against its 20 ms clock (ms per packet) as every endpoint kind reports it."""
    if lateness_ms.size == 0:
        return {}
    return {
        "p50_ms": round(float(np.percentile(lateness_ms, 50)), 3),
        "p99_ms": round(float(np.percentile(lateness_ms, 99)), 3),
        "max_ms": round(float(lateness_ms.max()), 3),
        "late_over_1ms": int((lateness_ms > 1.0).sum()),
    }


def save_sent(path: Path, send_ns: np.ndarray, seq: np.ndarray, rtp_ts: np.ndarray, ssrc: np.ndarray) -> None:
    """The ``*-sent.npz`` format, whoever sent the packets."""
    np.savez(
        path,
        send_ns=send_ns.astype(np.int64),
        seq=seq.astype(np.int32),
        rtp_ts=rtp_ts.astype(np.int64),
        ssrc=ssrc.astype(np.int64),
    )
