"""The listener's timeline: a jitter buffer decides which packets are played in time, the decoder
conceals the rest, and the result is the audio a listener would have heard.

Input is what the listener's device received (RTP packets with arrival times, recorded before aiortc's
own jitter buffer, which is not a model of a real phone: docs/design.md, "Why NetEq, not aiortc's
buffer"). Output audio keeps the sender's timeline: output sample ``k`` is RTP time ``k`` after the
earliest received packet, so it lines up with the reference clip by one constant lag. Target-driven
buffer-delay changes never insert or remove audio in the output (modelled as inaudible time-scaling);
a buffer that ran dry does, for a while (below).

Two buffers:

- ``FixedBuffer(depth_ms)``: a desk phone's static buffer. Frame ``f`` is due at
  ``a0 + depth + (f - f0) * 20 ms``, where ``a0`` is the arrival of the first packet to arrive and ``f0``
  its frame. A packet arriving after its due time is late: lost to the listener.
- ``AdaptiveBuffer`` (the default): WebRTC's NetEq, with its default parameters, since the calls are
  WebRTC calls (``testbed.scoring.neteq``): the delay manager's target from the 95th percentile of
  recent delay variation, 80 ms until its first update, 20 ms to 2 s; the delay grows at once and
  shrinks at most 50 ms/s. A packet that is not there at its turn while nothing later is either (the
  buffer ran dry: a queue held it and everything behind it) is waited for as NetEq does: concealment
  plays until it comes (``expanded`` frames), it plays, and accelerate cuts the wait out of the
  following audio. A packet overtaken by later ones is late: concealed and skipped. NetEq's reorder
  optimizer and the buffer-level filter's hysteresis are left out.

Why adaptive by default: browsers, Android/iOS WebRTC apps and most softphones run NetEq, which keeps
the buffer near the 95th percentile of recent delay variation. A fixed depth would either call moderate
jitter harmless (deep buffer, but then Ta is overstated on clean networks) or count as late what NetEq
would absorb (shallow buffer). NetEq aims at the 95th percentile of 500 ms *maxima*, so in steady
jitter almost nothing is late and the cost shows up as delay (Ta), as it does in a real WebRTC call.
Fixed buffers stay available to model desk phones and for what-ifs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from testbed.codecs import FRAME_S, codec
from testbed.rtp import extended_sequence, extended_timestamp, first_copies
from testbed.scoring.decode import Concealment, decode_frames
from testbed.scoring.neteq import AdaptiveBuffer, adaptive_due, take_back
from testbed.scoring.netstats import burst_ratio

__all__ = [
    "AdaptiveBuffer",
    "DEFAULT_BUFFER",
    "FixedBuffer",
    "JitterBuffer",
    "LATE",
    "LOST",
    "PLAYED",
    "PlayoutResult",
    "ReceivedPackets",
    "Schedule",
    "playout",
    "schedule",
    "simulate_arrivals",
]

PLAYED, LOST, LATE = 0, 1, 2
FRAME_NS = int(FRAME_S * 1e9)
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class ReceivedPackets:
    """Received RTP packets of one direction in arrival order (as ``PacketRecord.save`` writes them)."""

    arrival_ns: IntArray  # CLOCK_REALTIME ns
    seq: IntArray  # 16-bit RTP sequence numbers
    rtp_ts: IntArray  # 32-bit RTP timestamps
    payloads: tuple[bytes, ...]
    ssrc: IntArray | None = None

    @classmethod
    def from_arrays(
        cls,
        arrival_ns: npt.ArrayLike,
        seq: npt.ArrayLike,
        rtp_ts: npt.ArrayLike,
        payload_sizes: npt.ArrayLike,
        payload: npt.ArrayLike,
        ssrc: npt.ArrayLike | None = None,
        **_: Any,
    ) -> ReceivedPackets:
        """From the arrays of a ``*-received.npz``: ``ReceivedPackets.from_arrays(**np.load(path))``."""
        sizes = np.asarray(payload_sizes, dtype=np.int64)
        blob = np.asarray(payload, dtype=np.uint8).tobytes()
        ends = np.cumsum(sizes)
        payloads = tuple(blob[e - s : e] for s, e in zip(sizes.tolist(), ends.tolist(), strict=False))
        return cls(
            np.asarray(arrival_ns, dtype=np.int64),
            np.asarray(seq, dtype=np.int64),
            np.asarray(rtp_ts, dtype=np.int64),
            payloads,
            None if ssrc is None else np.asarray(ssrc, dtype=np.int64),
        )

    @classmethod
    def from_npz(cls, arrays: Mapping[str, Any]) -> ReceivedPackets:
        return cls.from_arrays(**dict(arrays))

    def __len__(self) -> int:
        return int(self.seq.size)


@dataclass(frozen=True)
class FixedBuffer:
    depth_ms: float = 60.0

    def describe(self) -> str:
        return f"fixed {self.depth_ms:g} ms"


JitterBuffer = FixedBuffer | AdaptiveBuffer
DEFAULT_BUFFER: JitterBuffer = AdaptiveBuffer()


@dataclass(frozen=True, eq=False)
class Schedule:
    """The jitter buffer's decisions, one entry per 20 ms frame from the earliest received one."""

    status: npt.NDArray[np.int8]  # PLAYED, LOST (never arrived) or LATE (arrived after its due time)
    packet: IntArray  # index into the ReceivedPackets of the frame's packet, -1 if none arrived
    due_ns: IntArray  # when the frame was due for playout
    wait_ms: npt.NDArray[np.float64]  # due minus arrival for arrived frames (negative: late), NaN if lost
    expand: IntArray | None = None  # per frame: 20 ms frames concealed before it while a dry buffer waited
    catch_up_ns: IntArray | None = None  # per frame: how much of such a wait is accelerated away at it

    @property
    def frames(self) -> int:
        return int(self.status.size)

    def with_missing_ends(self, lead: int, tail: int) -> Schedule:
        """The schedule over the sender's whole talk time: ``lead`` frames sent before the first one that
        arrived and ``tail`` after the last one, all lost (a path that died mid-call is not a short call)."""
        if lead <= 0 and tail <= 0:
            return self
        lead, tail = max(lead, 0), max(tail, 0)

        def pad(values: npt.NDArray[Any], fill: Any) -> npt.NDArray[Any]:
            return np.concatenate([np.full(lead, fill, values.dtype), values, np.full(tail, fill, values.dtype)])

        return Schedule(
            pad(self.status, LOST),
            pad(self.packet, -1),
            pad(self.due_ns, 0),
            pad(self.wait_ms, np.nan),
            None if self.expand is None else pad(self.expand, 0),
            None if self.catch_up_ns is None else pad(self.catch_up_ns, 0),
        )

    def count(self, status: int) -> int:
        return int((self.status == status).sum())


@dataclass(frozen=True, eq=False)
class PlayoutResult:
    audio: npt.NDArray[np.int16]  # what the listener heard, sender's timeline (see module docstring)
    rate: int
    frames: int
    played: int
    lost: int  # never arrived
    late: int  # arrived after its playout time
    concealed: int  # frames the decoder concealed (lost + late - recovered, unless concealment="silence")
    effective_loss: float  # (lost + late - recovered) / frames: the E-model's Ppl
    burst_ratio: float | None  # BurstR of the effective loss pattern
    mean_buffer_delay_ms: float  # mean wait of played packets in the buffer: the jitter buffer's part of Ta
    buffer: str
    frame_status: npt.NDArray[np.int8]
    fec_recovered: int = 0  # lost or late frames rebuilt from the next packet's in-band FEC (Opus)
    expanded: int = 0  # 20 ms frames concealed while a dry buffer waited for a late packet (neteq)

    def as_dict(self) -> dict[str, Any]:
        """The numbers (not the audio) for result.json."""
        return {
            "rate": self.rate,
            "frames": self.frames,
            "played": self.played,
            "lost": self.lost,
            "late": self.late,
            "concealed": self.concealed,
            "effective_loss": self.effective_loss,
            "fec_recovered": self.fec_recovered,
            "expanded": self.expanded,
            "burst_ratio": self.burst_ratio,
            "buffer": self.buffer,
            "mean_buffer_delay_ms": None if np.isnan(self.mean_buffer_delay_ms) else self.mean_buffer_delay_ms,
        }


def _frames_of(packets: ReceivedPackets, frame_ticks: int) -> tuple[IntArray, IntArray]:
    """Frame index (from the earliest received RTP time) and packet index of each first copy."""
    keep = np.arange(len(packets))
    if packets.ssrc is not None and np.unique(packets.ssrc).size > 1:
        values, counts = np.unique(packets.ssrc, return_counts=True)
        keep = np.flatnonzero(packets.ssrc == values[np.argmax(counts)])
    _, first = first_copies(extended_sequence(packets.seq[keep]))  # duplicates: the first copy to arrive counts
    keep = keep[np.sort(first)]
    ts = extended_timestamp(packets.rtp_ts[keep])
    frame = np.round((ts - ts.min()) / frame_ticks).astype(np.int64) if ts.size else ts
    return frame, keep


def schedule(packets: ReceivedPackets, codec_name: str, buffer: JitterBuffer = DEFAULT_BUFFER) -> Schedule:
    """Which frames play, which are late and which never came (no audio work; fast)."""
    frame, index = _frames_of(packets, codec(codec_name).frame_ticks)
    if frame.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Schedule(np.zeros(0, dtype=np.int8), empty, empty, np.zeros(0))
    arrival = packets.arrival_ns[index]
    order = np.argsort(arrival, kind="stable")  # records are in arrival order already; be sure
    frame, index, arrival = frame[order], index[order], arrival[order]
    n = int(frame.max()) + 1
    per_frame = np.full(n, -1, dtype=np.int64)
    for i in range(frame.size - 1, -1, -1):  # first arrival wins for a frame sent twice
        per_frame[frame[i]] = i
    transit = arrival - frame * FRAME_NS
    expand = catch_up = None
    if isinstance(buffer, FixedBuffer):
        due = transit[0] + int(buffer.depth_ms * 1e6) + np.arange(n, dtype=np.int64) * FRAME_NS
    else:
        frame_arrival = np.where(per_frame >= 0, arrival[np.maximum(per_frame, 0)], -1)
        neteq = adaptive_due(frame, arrival, transit, frame_arrival, buffer)
        due, expand, catch_up = neteq.due_ns, neteq.expand, neteq.catch_up_ns
    status = np.full(n, LOST, dtype=np.int8)
    wait = np.full(n, np.nan)
    got = per_frame >= 0
    wait[got] = (due[got] - arrival[per_frame[got]]) / 1e6
    status[got] = np.where(wait[got] >= 0, PLAYED, LATE)
    packet = np.where(got, index[np.maximum(per_frame, 0)], -1)
    return Schedule(status, packet, due, wait, expand, catch_up)


def playout(
    packets: ReceivedPackets,
    codec_name: str,
    buffer: JitterBuffer = DEFAULT_BUFFER,
    *,
    rate: int | None = None,
    concealment: Concealment = "plc",
    decode: bool = True,
    missing_ends: tuple[int, int] = (0, 0),
    fec: bool = False,
) -> PlayoutResult:
    """Decode what the listener would have heard through ``buffer``, concealing lost and late frames.

    ``rate`` is the output rate for Opus (default 16 kHz); G.711 gives 8 kHz and G.722 16 kHz. Without
    ``decode`` (packets whose payloads are unknown) the result has the schedule's figures and no audio.
    ``missing_ends``: frames the sender sent before the first and after the last that arrived, lost.
    ``fec``: the sender's packets carry in-band FEC (Opus, provisioned for some loss): recover a missing
    frame from the next packet's when that packet is there in time (``fec_frames``), as receivers do;
    the frame then counts as neither lost nor concealed.
    """
    sched = schedule(packets, codec_name, buffer).with_missing_ends(*missing_ends)
    recoverable = fec_frames(sched, packets) if fec and codec(codec_name).decoder == "opus" else {}
    if decode:
        frames = [
            packets.payloads[p] if s == PLAYED else None
            for s, p in zip(sched.status.tolist(), sched.packet.tolist(), strict=False)
        ]
        next_payloads = {k: packets.payloads[p] for k, p in recoverable.items()}
        audio = _heard(codec_name, frames, rate or codec(codec_name).audio_rate, concealment, next_payloads, sched)
    else:
        audio = np.zeros(0, dtype=np.int16)
    out_rate = rate or codec(codec_name).audio_rate
    lost, late = sched.count(LOST), sched.count(LATE)
    expand = sched.expand if sched.expand is not None else np.zeros(sched.frames, dtype=np.int64)
    expanded = int(expand.sum())
    missing = sched.status != PLAYED
    missing[list(recoverable)] = False
    missing |= expand > 0
    waits = sched.wait_ms[sched.status == PLAYED]
    return PlayoutResult(
        audio=audio,
        rate=out_rate,
        frames=sched.frames,
        played=sched.count(PLAYED),
        lost=lost,
        late=late,
        concealed=0 if concealment == "silence" else lost + late - len(recoverable) + expanded,
        effective_loss=(lost + late - len(recoverable) + expanded) / sched.frames if sched.frames else 0.0,
        burst_ratio=burst_ratio(missing),
        mean_buffer_delay_ms=float(waits.mean()) if waits.size else float("nan"),
        buffer=buffer.describe(),
        frame_status=sched.status,
        fec_recovered=len(recoverable),
        expanded=expanded,
    )


def _heard(
    codec_name: str,
    frames: list[bytes | None],
    rate: int,
    concealment: Concealment,
    next_payloads: dict[int, bytes],
    sched: Schedule,
) -> npt.NDArray[np.int16]:
    """Decode the played frames; where a dry buffer waited for a late packet, its concealment goes in
    front of that frame and the catch-up cuts as much out of what follows (``neteq.take_back``), so the
    audio ends on the sender's timeline again."""
    expand = sched.expand
    if expand is None or not expand.any():
        return decode_frames(codec_name, frames, rate, concealment, next_payloads)
    position = np.arange(len(frames)) + np.cumsum(expand)  # where each frame lands among the inserted ones
    stretched: list[bytes | None] = []
    for waited, payload in zip(expand.tolist(), frames, strict=True):
        stretched.extend([None] * waited)
        stretched.append(payload)
    audio = decode_frames(
        codec_name, stretched, rate, concealment, {int(position[k]): p for k, p in next_payloads.items()}
    )
    size = int(round(rate * FRAME_S))
    catch_up = sched.catch_up_ns if sched.catch_up_ns is not None else np.zeros(len(frames), dtype=np.int64)
    owed = np.flatnonzero(catch_up)
    audio = take_back(audio, rate, position[owed] * size, catch_up[owed] * rate // 1_000_000_000)
    length = len(frames) * size
    return audio[:length] if audio.size >= length else np.concatenate([audio, np.zeros(length - audio.size, np.int16)])


def fec_frames(sched: Schedule, packets: ReceivedPackets) -> dict[int, int]:
    """Missing frames (lost or late) whose next frame's packet was in the buffer by their due time: a
    receiver decodes that packet's in-band FEC for them. Frame -> the next packet's index."""
    status, packet, due = sched.status, sched.packet, sched.due_ns
    found = {}
    for k in np.flatnonzero(status[:-1] != PLAYED).tolist():
        following = int(packet[k + 1])
        if following >= 0 and due[k] > 0 and packets.arrival_ns[following] <= due[k]:
            found[k] = following
    return found


def simulate_arrivals(
    payloads: Sequence[bytes],
    codec_name: str,
    delays_ms: npt.ArrayLike,
    lost: npt.ArrayLike | None = None,
    *,
    start_ns: int = 1_700_000_000_000_000_000,
    seq0: int = 0,
    ts0: int = 0,
) -> ReceivedPackets:
    """What a receiver would record for a sender of 20 ms packets (looping ``payloads``) over a network
    with the given per-packet one-way delays and losses: for tests, benchmarks and what-ifs."""
    delays = np.asarray(delays_ms, dtype=np.float64)
    n = delays.size
    mask = np.zeros(n, dtype=bool) if lost is None else np.asarray(lost, dtype=bool)
    i = np.arange(n, dtype=np.int64)
    arrival = start_ns + i * FRAME_NS + np.round(delays * 1e6).astype(np.int64)
    keep = np.flatnonzero(~mask)
    keep = keep[np.argsort(arrival[keep], kind="stable")]
    ticks = codec(codec_name).frame_ticks
    return ReceivedPackets(
        arrival_ns=arrival[keep],
        seq=(seq0 + keep) % (1 << 16),
        rtp_ts=(ts0 + keep * ticks) % (1 << 32),
        payloads=tuple(payloads[k % len(payloads)] for k in keep.tolist()),
    )
