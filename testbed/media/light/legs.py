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


@dataclass(eq=False)  # compared and hashed by identity: the engine keys its payload table by clip
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
    base_seq: int = -1  # extended, the first received
    highest: int = 0  # extended highest sequence number received
    jitter: float = 0.0  # RFC 3550 interarrival jitter, in RTP timestamp units
    last_seq: int = 0
    last_extended: int = 0  # the last arrival's extended sequence number
    last_stamp: int = 0
    previous_arrival_ns: int = 0  # the jitter's previous arrival
    heard_one: bool = False
    expected_prior: int = 0
    received_prior: int = 0
    lsr: int = 0
    lsr_at_ns: int = 0
    rtcp_received: int = 0
    rtcp_sent: int = 0

    def note_rtp(self, seq: list[int], rtp_ts: list[int], arrival_ns: list[int]) -> None:
        """A batch of arrivals (in order) into RFC 3550's receiver statistics: the extended highest
        sequence number (A.1, from the wrapped step between arrivals) and the interarrival jitter (A.8,
        J += (|D| - J) / 16 with D in RTP timestamp units)."""
        if self.base_seq < 0:
            self.base_seq = self.highest = self.last_extended = self.last_seq = seq[0]
            self.last_stamp, self.previous_arrival_ns = rtp_ts[0], arrival_ns[0]
        per_ns = self.clock / 1e9
        jitter, extended, last_seq = self.jitter, self.last_extended, self.last_seq
        last_stamp, last_arrival, highest, heard = (
            self.last_stamp,
            self.previous_arrival_ns,
            self.highest,
            self.heard_one,
        )
        for number, stamp, arrival in zip(seq, rtp_ts, arrival_ns, strict=True):
            extended += (number - last_seq + 0x8000) % 0x10000 - 0x8000
            highest = max(highest, extended)
            if heard:
                step = (stamp - last_stamp + (1 << 31)) % (1 << 32) - (1 << 31)
                jitter += (abs((arrival - last_arrival) * per_ns - step) - jitter) / 16
            heard = True
            last_seq, last_stamp, last_arrival = number, stamp, arrival
        self.jitter, self.last_extended, self.last_seq, self.highest = jitter, extended, last_seq, highest
        self.last_stamp, self.previous_arrival_ns, self.heard_one = last_stamp, last_arrival, heard

    def report_block(self, now_ns: int) -> tuple[int, int, int, int, int, int, int] | None:
        """The receiver report block of what this side heard since the last one."""
        if self.remote_ssrc is None or self.base_seq < 0:
            return None
        highest = self.highest
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
