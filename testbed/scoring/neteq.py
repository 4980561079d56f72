"""WebRTC NetEq as the playout model needs it: the delay manager's target, each frame's due time, and
what a buffer that ran dry does audibly.

The target (DelayManager, UnderrunOptimizer, PacketArrivalHistory, with WebRTC's defaults): each
packet's relative delay is its transit time minus the fastest transit of the last 2 s of RTP time;
every 500 ms the interval's largest relative delay goes into a histogram of 20 ms buckets (forgetting
factor 0.983, faster at the start); the target is ``(1 + bucket of the 95 % quantile) * 20 ms``, 80 ms
until the first update. Frame ``f`` is due at ``fastest transit + f * 20 ms + target``, as known just
before its nominal time. The delay grows at once and shrinks at most ``max_decrease_ms_per_s``; those
target-driven changes are taken as inaudible time-scaling (NetEq does them mostly in quiet stretches).

A buffer that ran dry is another matter. When a frame's packet is not there at its turn and nothing
later is either (a queue held it and everything behind it: the usual way one packet is late), NetEq
expands (conceals) until that packet arrives, plays it and the packets bunched behind it, and then
accelerates (cuts pitch periods) to take the extra delay back. Measured on a 10 ms path with one
60 ms spike in a 10 s call (``bench/late_frame.py --lab``): Chromium's own playout lost 0.58 PESQ-WB
on average (0.12-1.04, 12 calls); concealing the late frames in place cost 0.32 on the same packets,
too little; expand + accelerate, as here, 0.51 (Chromium 0.57 in those calls). So the model does it
too: the expansion (whole 20 ms frames of the decoder's concealment) counts as concealment, the late
frame plays, and the catch-up cuts pitch periods out of the following audio (``take_back``) at the
pace the due times come down.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from testbed.codecs import FRAME_S

__all__ = ["AdaptiveBuffer", "AdaptiveDue", "adaptive_due", "take_back"]

FRAME_NS = int(FRAME_S * 1e9)
IntArray = npt.NDArray[np.int64]
CUT_BLOCK_S = 0.030  # NetEq's accelerate works on 30 ms blocks, one pitch period per block
PITCH_S = (0.0025, 0.015)  # pitch periods it looks for
CORRELATION = 0.9  # a block it may cut (or a quiet one)
QUIET_RMS = 100.0  # int16 units: about -50 dBov


@dataclass(frozen=True)
class AdaptiveBuffer:
    """NetEq's delay manager (WebRTC's audio jitter buffer), defaults as in WebRTC (module docstring)."""

    min_ms: float = 20.0
    max_ms: float = 2000.0
    start_ms: float = 80.0  # NetEq kStartDelayMs
    quantile: float = 0.95  # DelayManager::Config quantile
    forget_factor: float = 0.983  # per histogram update
    start_forget_weight: float = 2.0
    interval_s: float = 0.5  # resample_interval_ms: the histogram gets each interval's maximum
    window_s: float = 2.0  # PacketArrivalHistory: relative delay against the fastest packet of 2 s
    bucket_ms: float = 20.0
    max_decrease_ms_per_s: float = 50.0  # our assumption for how fast accelerate brings the delay down

    def describe(self) -> str:
        return f"adaptive (NetEq-like) {self.min_ms:g}-{self.max_ms:g} ms"


@dataclass(frozen=True, eq=False)
class AdaptiveDue:
    due_ns: IntArray  # when each frame is played
    expand: IntArray  # per frame: 20 ms frames concealed before it while the dry buffer waited for it
    catch_up_ns: IntArray  # per frame: how much of that wait is taken back (accelerated away) at it


def neteq_targets(
    frame: IntArray, arrival: IntArray, transit: IntArray, b: AdaptiveBuffer
) -> tuple[IntArray, IntArray]:
    """Per packet (arrival order): the fastest transit of the 2 s history and NetEq's target delay (ns)
    after that packet, following UnderrunOptimizer + Histogram + PacketArrivalHistory."""
    n = frame.size
    window_frames = b.window_s / FRAME_S
    buckets = int(round(2000 / b.bucket_ms))  # NetEq: 100 buckets of 20 ms, delays up to 2 s
    hist = 0.5 ** (np.arange(buckets) + 1.0)
    hist /= hist.sum()
    forget, adds = 0.0, 0
    # plain lists and a monotonic deque: a loop per packet over numpy scalars costs 20 ms per call
    # direction, which a 1000-direction run pays 1000 times
    frames, arrivals, transits = frame.tolist(), arrival.tolist(), transit.tolist()
    fastest_list, target_list = [0] * n, [0] * n
    low, high = int(b.min_ms * 1e6), int(b.max_ms * 1e6)
    current = int(b.start_ms * 1e6)
    front, newest = 0, frames[0]
    interval_start, interval_max = arrivals[0], 0
    window: deque[int] = deque()  # indices in [front, i] whose transits increase: the minimum first
    for i in range(n):
        newest = max(newest, frames[i])
        while frames[front] + window_frames < newest:
            front += 1
        while window and transits[window[-1]] >= transits[i]:
            window.pop()
        window.append(i)
        while window[0] < front:
            window.popleft()
        fastest_i = transits[window[0]]
        fastest_list[i] = fastest_i
        if arrivals[i] - interval_start > b.interval_s * 1e9:
            index = int(interval_max // (b.bucket_ms * 1e6))
            if index < buckets:
                hist *= forget
                hist[index] += 1.0 - forget
            adds += 1
            forget = min(b.forget_factor, max(0.0, 1.0 - b.start_forget_weight / (adds + 1)))
            quantile_bucket = int(np.searchsorted(np.cumsum(hist), b.quantile - 1e-12))
            current = int((quantile_bucket + 1) * b.bucket_ms * 1e6)
            interval_start, interval_max = arrivals[i], 0
        interval_max = max(interval_max, transits[i] - fastest_i)
        target_list[i] = min(max(current, low), high)
    fastest = np.array(fastest_list, dtype=np.int64)
    target = np.array(target_list, dtype=np.int64)
    return fastest, target


def adaptive_due(
    frame: IntArray, arrival: IntArray, transit: IntArray, frame_arrival: IntArray, b: AdaptiveBuffer
) -> AdaptiveDue:
    """Due time of each frame (``frame_arrival``: its packet's arrival, -1 if none; the others in
    arrival order), with the dry buffer's expansions and their catch-up (module docstring)."""
    n = frame_arrival.size
    fastest, target = neteq_targets(frame, arrival, transit, b)
    later = np.where(frame_arrival >= 0, frame_arrival, np.iinfo(np.int64).max)
    next_later = np.minimum.accumulate(later[::-1])[::-1]  # earliest arrival of frame f or after
    next_later = np.append(next_later[1:], np.iinfo(np.int64).max)  # ... of a frame after f
    due = [0] * n
    expand = [0] * n
    catch_up = [0] * n
    due[0] = int(transit[0]) + int(b.start_ms * 1e6)
    max_step = int(round(b.max_decrease_ms_per_s * 1e6 * FRAME_S))
    longest_wait = int(b.max_ms * 1e6)
    arrivals, fastest_list, target_list = arrival.tolist(), fastest.tolist(), target.tolist()
    came_list, next_list = frame_arrival.tolist(), next_later.tolist()
    owed = 0  # expansion not yet taken back
    for f in range(1, n):
        nominal = due[f - 1] + FRAME_NS
        known = max(bisect.bisect_right(arrivals, nominal) - 1, 0)
        desired = fastest_list[known] + f * FRAME_NS + target_list[known]
        due_f = desired if desired >= nominal else max(desired, nominal - max_step)
        if owed and due_f < nominal:
            catch_up[f] = min(owed, nominal - due_f)
            owed -= catch_up[f]
        came = came_list[f]
        if came > due_f and next_list[f] >= came and came - due_f <= longest_wait:
            expand[f] = -(-(came - due_f) // FRAME_NS)  # whole frames of concealment until it came
            due_f += expand[f] * FRAME_NS
            owed += expand[f] * FRAME_NS
        due[f] = due_f
    return AdaptiveDue(
        np.array(due, dtype=np.int64), np.array(expand, dtype=np.int64), np.array(catch_up, dtype=np.int64)
    )


def take_back(audio: npt.NDArray[np.int16], rate: int, starts: IntArray, amounts: IntArray) -> npt.NDArray[np.int16]:
    """Accelerate: from each ``starts`` sample on, ``amounts`` more samples may go. Whenever enough is
    owed for a pitch period, the next 30 ms block loses one period (the best-correlated lag in
    2.5-15 ms, cross-faded) if it correlates >= 0.9 or is quiet; otherwise the block plays whole."""
    if not len(starts):
        return audio
    x = audio.astype(np.float64)
    block, low, high = int(CUT_BLOCK_S * rate), int(PITCH_S[0] * rate), int(PITCH_S[1] * rate)
    owed = np.zeros(x.size + 1, dtype=np.int64)
    np.add.at(owed, np.clip(starts, 0, x.size), amounts)
    owed = np.cumsum(owed)  # how much may have gone by each input sample
    out: list[npt.NDArray[np.float64]] = []
    at, taken = 0, 0
    while at + block + high < x.size and owed[-1] - taken >= low:
        may = int(owed[at]) - taken
        if may < low:  # nothing owed here yet: the block plays whole
            out.append(x[at : at + block])
            at += block
            continue
        seg = x[at : at + block + high]
        head = seg[: block - high]
        lags = np.arange(low, min(high, may) + 1)
        scores = np.array([_correlation(head, seg[lag : lag + head.size]) for lag in lags.tolist()])
        if scores.max() >= CORRELATION or np.sqrt(np.mean(seg[:block] ** 2)) < QUIET_RMS:
            lag = int(lags[int(np.argmax(scores))])
            fade = np.linspace(0.0, 1.0, lag)
            out.append(seg[:lag] * (1.0 - fade) + seg[lag : 2 * lag] * fade)
            out.append(seg[2 * lag : block])
            taken += lag
        else:
            out.append(seg[:block])
        at += block
    out.append(x[at:])
    return np.clip(np.round(np.concatenate(out)), -32768, 32767).astype(np.int16)


def _correlation(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-9))
