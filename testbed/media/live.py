"""Running counts of a leg while its call is up, for the harness's live view (``testbed.workload.live``):
what it sent and received so far, and the RFC 3550 jitter, from the packet records the leg keeps anyway.

Cheap by construction: each snapshot looks only at the packets recorded since the last one (50 a second
per direction), adds nothing per packet, and decodes nothing; the harness asks once a second.
Delay needs both ends: a snapshot gives the leg's first sent and first received packet (send or arrival
time and RTP timestamp) and the sum, over the packets received, of each arrival's offset from the RTP
clock anchored at the first one; the harness turns that into one-way delay with the sender's anchor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from testbed.media.records import PacketRecord, SentRecord
from testbed.rtp import SEQ_BITS, TS_BITS, nearest_cycle


@dataclass
class LiveCounter:
    """One leg's running counts (see the module docstring); ``snapshot`` advances over new packets."""

    clock: int  # RTP clock rate of the call's codec
    seen: int = 0  # received packets already counted
    first_seq: int | None = None
    highest: int = 0  # extended highest sequence number so far
    recv_anchor: tuple[int, int] | None = None  # (arrival ns, extended RTP timestamp) of the first packet
    last_ts: int = 0  # extended timestamp of the previous packet (wrap-around tracking)
    offset_sum_ms: float = 0.0  # sum of arrival offsets from the anchored RTP clock, ms
    jitter_ms: float = 0.0  # RFC 3550 interarrival jitter
    last_transit_ms: float | None = None

    def snapshot(self, received: PacketRecord, sent: SentRecord) -> dict[str, Any]:
        arrivals, seqs, stamps = received.arrival_ns, received.seq, received.rtp_ts
        for index in range(self.seen, len(seqs)):
            self._add(arrivals[index], seqs[index], stamps[index])
        self.seen = len(seqs)
        return {
            "clock": self.clock,
            "sent": len(sent.seq),
            "send_anchor": [sent.send_ns[0], sent.rtp_ts[0]] if sent.seq else None,
            "received": self.seen,
            "expected": 0 if self.first_seq is None else self.highest - self.first_seq + 1,
            "recv_anchor": list(self.recv_anchor) if self.recv_anchor else None,
            "offset_sum_ms": round(self.offset_sum_ms, 3),
            "jitter_ms": round(self.jitter_ms, 3),
        }

    def _add(self, arrival_ns: int, seq: int, stamp: int) -> None:
        if self.first_seq is None or self.recv_anchor is None:
            self.first_seq = self.highest = seq
            self.recv_anchor = (arrival_ns, stamp)
            self.last_ts = stamp
        else:
            self.highest = max(self.highest, nearest_cycle(seq, self.highest, SEQ_BITS))
            stamp = nearest_cycle(stamp, self.last_ts, TS_BITS)
            self.last_ts = stamp
        anchor_ns, anchor_ts = self.recv_anchor
        offset_ms = (arrival_ns - anchor_ns) / 1e6 - (stamp - anchor_ts) * 1000 / self.clock
        self.offset_sum_ms += offset_ms
        if self.last_transit_ms is not None:
            self.jitter_ms += (abs(offset_ms - self.last_transit_ms) - self.jitter_ms) / 16
        self.last_transit_ms = offset_ms
