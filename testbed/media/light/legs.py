"""What the light engine keeps per stream: the leg (its sockets, identifiers and the RFC 3550 receive
statistics its reports carry) and the per-row arrays the sending loop reads and writes for a whole
batch at once."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["Clip", "LightLeg", "RowArrays"]


@dataclass
class Clip:
    """A pre-encoded clip as rows for the batch gather (``packets.payload_matrix``)."""

    rows: npt.NDArray[np.uint8]
    lengths: npt.NDArray[np.int64]


@dataclass(eq=False)
class LightLeg:
    """One side of one call in the engine."""

    call: str
    row: int
    sock: socket.socket
    port: int
    ssrc: int
    dscp: int
    pt: int
    ticks: int  # RTP timestamp step per packet
    clock: int
    clip: Clip
    offset: int  # the clip frame the first packet carries
    seq0: int
    ts0: int
    cname: bytes
    created: float = field(default_factory=time.time)
    peer: tuple[str, int] | None = None
    connected_at: float | None = None
    started_ns: int | None = None  # when the first packet went
    stopped_at: float | None = None
    origin_ns: int = 0  # the first packet's due time; packet k is due at origin + k * 20 ms
    # what arrived
    received: int = 0
    last_arrival_ns: int = 0
    remote_ssrc: int | None = None
    base_seq: int = -1
    max_seq: int = 0
    cycles: int = 0
    jitter: float = 0.0
    last_transit: int | None = None
    expected_prior: int = 0
    received_prior: int = 0
    lsr: int = 0
    lsr_at_ns: int = 0
    rtcp_received: int = 0
    rtcp_sent: int = 0

    def note_rtp(self, seq: int, rtp_ts: int, arrival_ns: int) -> None:
        """RFC 3550 A.1 and A.8: the extended highest sequence number and the interarrival jitter."""
        if self.base_seq < 0:
            self.base_seq, self.max_seq = seq, seq
        elif seq > self.max_seq and seq - self.max_seq < 0x8000:
            self.max_seq = seq
        elif seq < self.max_seq and self.max_seq - seq > 0x8000:
            self.cycles += 1 << 16
            self.max_seq = seq
        transit = arrival_ns * self.clock // 1_000_000_000 - rtp_ts
        if self.last_transit is not None:
            self.jitter += (abs(transit - self.last_transit) - self.jitter) / 16
        self.last_transit = transit

    def report_block(self, now_ns: int) -> tuple[int, int, int, int, int, int, int] | None:
        """The receiver report block of what this side heard since the last one."""
        if self.remote_ssrc is None or self.base_seq < 0:
            return None
        highest = self.cycles + self.max_seq
        expected = highest - self.base_seq + 1
        interval_expected = expected - self.expected_prior
        interval_lost = interval_expected - (self.received - self.received_prior)
        fraction = (interval_lost << 8) // interval_expected if interval_expected > 0 and interval_lost > 0 else 0
        self.expected_prior, self.received_prior = expected, self.received
        dlsr = ((now_ns - self.lsr_at_ns) * 65536 // 1_000_000_000) if self.lsr else 0
        return (self.remote_ssrc, min(fraction, 255), expected - self.received, highest & 0xFFFFFFFF,
                int(self.jitter), self.lsr, dlsr & 0xFFFFFFFF)  # fmt: skip


@dataclass
class RowArrays:
    """Per stream (a row of the datagram buffer): what the sending loop reads and writes as arrays."""

    active: npt.NDArray[np.bool_]
    next_due: npt.NDArray[np.int64]  # the next packet's due time (epoch ns)
    count: npt.NDArray[np.int64]  # packets sent
    seq0: npt.NDArray[np.int64]
    ts0: npt.NDArray[np.int64]
    ticks: npt.NDArray[np.int64]
    offset: npt.NDArray[np.int64]
    frames: npt.NDArray[np.int64]  # the clip's length in frames
    base: npt.NDArray[np.int64]  # the clip's first row in the payload table
    octets: npt.NDArray[np.int64]
    next_rtcp: npt.NDArray[np.int64]
    send_ns: npt.NDArray[np.int64]  # [row, packet]: when each packet went

    @classmethod
    def allocate(cls, rows: int, frames: int) -> RowArrays:
        def zeros() -> npt.NDArray[np.int64]:
            return np.zeros(rows, np.int64)

        return cls(
            active=np.zeros(rows, bool), next_due=zeros(), count=zeros(), seq0=zeros(), ts0=zeros(), ticks=zeros(),
            offset=zeros(), frames=np.ones(rows, np.int64), base=zeros(), octets=zeros(),
            next_rtcp=np.full(rows, np.iinfo(np.int64).max, np.int64), send_ns=np.zeros((rows, frames), np.int64),
        )  # fmt: skip

    def keep(self, old: RowArrays) -> None:
        """Copy ``old``'s rows (and packets) into these larger arrays."""
        for name in self.__dataclass_fields__:
            mine, theirs = getattr(self, name), getattr(old, name)
            if mine.ndim == 1:
                mine[: len(theirs)] = theirs
            else:
                mine[: theirs.shape[0], : theirs.shape[1]] = theirs
