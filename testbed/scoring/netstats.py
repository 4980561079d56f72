"""Network statistics of one call direction, from what the packet taps saw on the wire.

Inputs are plain numpy arrays, one entry per *sent* packet (extended RTP sequence number, send time,
receive time or -1 when lost), so this module does not depend on the tap's file format. Optionally the
receiver's arrival order (sequence numbers as they arrived, duplicates included) for reordering and
duplicate counts.

Definitions (so the numbers mean what a VoIP engineer expects):

- loss: packets sent and never received, over packets sent (duplicates do not count as received twice).
- loss runs / burst ratio: runs of consecutive lost sequence numbers. ``BurstR`` as in ITU-T G.107 / G.113
  Appendix I: observed mean burst length over the mean burst length of random loss at the same loss
  probability, ``1 / (1 - p)``. Random loss gives about 1, bursty loss more than 1.
- jitter: RFC 3550 section 6.4.1 interarrival jitter ``J += (|D| - J) / 16`` over received packets in
  arrival order, with transit times taken from send times (or from RTP timestamps when given, as a
  receiver computes it). Reported as the final value (what the last RTCP report would carry), the mean
  and the maximum of the running estimate, in ms.
- one-way delay: receive time minus send time of received packets (first copy), in ms.
- reordered: RFC 4737 "Type-P-Reordered": a packet whose sequence number is lower than one that already
  arrived.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from testbed.rtp import extended_timestamp

__all__ = [
    "DelayStats",
    "JitterStats",
    "LossStats",
    "NetStats",
    "SecondSeries",
    "burst_ratio",
    "loss_runs",
    "network_stats",
    "rfc3550_jitter",
]

IntArray = npt.NDArray[np.int64]


def _jsonable(value: Any) -> Any:
    """Plain Python numbers for JSON: numpy scalars become floats/ints, NaN becomes None."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


class _AsDict:
    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _jsonable(asdict(self))  # type: ignore[call-overload]
        return data


@dataclass(frozen=True)
class LossStats(_AsDict):
    sent: int
    received: int
    lost: int
    fraction: float  # lost / sent
    runs: int  # number of loss bursts (runs of consecutive lost packets)
    mean_burst: float  # mean run length in packets (0 when nothing was lost)
    max_burst: int
    burst_ratio: float | None  # G.113 BurstR; 1.0 when nothing was lost, None when everything was


@dataclass(frozen=True)
class DelayStats(_AsDict):
    """One-way delay of received packets in ms (NaN, i.e. null in JSON, when nothing arrived)."""

    min_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


@dataclass(frozen=True)
class JitterStats(_AsDict):
    """RFC 3550 interarrival jitter in ms: final value, mean and maximum of the running estimate."""

    final_ms: float
    mean_ms: float
    max_ms: float


@dataclass(frozen=True)
class SecondSeries(_AsDict):
    """Per-bin series for plots; bins are by send time from the first packet sent (``start_s``)."""

    start_s: list[float]
    sent: list[int]
    lost: list[int]
    loss_fraction: list[float]
    mean_delay_ms: list[float]
    p95_delay_ms: list[float]
    jitter_ms: list[float]  # the running RFC 3550 jitter at the bin's last arrival (as an RTCP report would say)


@dataclass(frozen=True)
class LossBins(_AsDict):
    """Packets sent and lost per ``bin_s`` of send time from the first packet sent: fine enough for the
    vendors' short windows (Microsoft's burst loss in any 200 ms), small enough to keep per direction."""

    bin_s: float
    sent: list[int]
    lost: list[int]


LOSS_BIN_S = 0.1


@dataclass(frozen=True)
class NetStats(_AsDict):
    loss: LossStats
    delay: DelayStats
    jitter: JitterStats
    reordered: int
    duplicates: int
    per_second: SecondSeries
    in_flight: int = 0  # sent, not arrived by hang-up, and too recent to call lost: left out of everything
    loss_bins: LossBins | None = None


def in_flight(send_ns: npt.ArrayLike, recv_ns: npt.ArrayLike, hang_up_ns: int) -> npt.NDArray[np.bool_]:
    """Packets whose fate is unknown: not arrived (``recv_ns`` < 0) and sent so late that, at the highest
    one-way delay any packet of the direction took, they would have arrived after the listener hung up."""
    send, recv = np.asarray(send_ns, dtype=np.int64), np.asarray(recv_ns, dtype=np.int64)
    arrived = recv >= 0
    slowest = int((recv[arrived] - send[arrived]).max()) if arrived.any() else 0
    return (~arrived) & (send + max(slowest, 0) > hang_up_ns)


def loss_runs(lost: npt.ArrayLike) -> IntArray:
    """Lengths of the runs of consecutive ``True`` in a per-packet (sequence-ordered) loss mask."""
    mask = np.asarray(lost, dtype=bool)
    if not mask.any():
        return np.zeros(0, dtype=np.int64)
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return (ends - starts).astype(np.int64)


def burst_ratio(lost: npt.ArrayLike) -> float | None:
    """G.113 Appendix I BurstR from a loss mask: observed mean burst length / (1 / (1 - p)).

    1.0 when nothing was lost (the E-model's random-loss default); None when everything was lost
    (the ratio is undefined: the call carried no audio at all).
    """
    mask = np.asarray(lost, dtype=bool)
    if mask.size == 0 or not mask.any():
        return 1.0
    p = mask.mean()
    if p >= 1.0:
        return None
    return float(loss_runs(mask).mean() * (1.0 - p))


def rfc3550_jitter(recv_ns: npt.ArrayLike, send_ns: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Running RFC 3550 jitter estimate (ns) after each packet, for packets given in arrival order.

    ``send_ns`` is the sender's time of each packet (send time, or RTP timestamp converted to ns): only
    differences matter. The first packet's estimate is 0.
    """
    recv, send = np.asarray(recv_ns), np.asarray(send_ns)
    if recv.size == 0:
        return np.zeros(0)
    # offsets first, in the arrays' own type: epoch nanoseconds (~1.7e18) lose 256 ns as float64
    transit = (recv - recv[0]).astype(np.float64) - (send - send[0]).astype(np.float64)
    out = np.zeros(transit.size)
    j = 0.0
    for i, d in enumerate(np.abs(np.diff(transit)), start=1):
        j += (d - j) / 16.0
        out[i] = j
    return out


def _percentiles(ms: npt.NDArray[np.float64]) -> DelayStats:
    if ms.size == 0:
        nan = float("nan")
        return DelayStats(nan, nan, nan, nan, nan, nan)
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return DelayStats(float(ms.min()), float(p50), float(p95), float(p99), float(ms.max()), float(ms.mean()))


def _reordered(order: IntArray) -> int:
    """Packets (first copies, in arrival order) with a sequence number below the highest seen before."""
    if order.size < 2:
        return 0
    running_max = np.maximum.accumulate(order)
    return int((order[1:] < running_max[:-1]).sum())


def network_stats(
    seq: npt.ArrayLike,
    send_ns: npt.ArrayLike,
    recv_ns: npt.ArrayLike,
    *,
    arrival_seq: npt.ArrayLike | None = None,
    rtp_ts: npt.ArrayLike | None = None,
    clock_rate: int | None = None,
    bin_s: float = 1.0,
) -> NetStats:
    """Loss, burst ratio, RFC 3550 jitter, one-way delay, reordering and duplicates of one direction.

    ``seq``, ``send_ns``, ``recv_ns`` (and ``rtp_ts``) have one entry per sent packet; ``recv_ns`` is -1
    for a lost packet. ``arrival_seq``: the receiver's sequence numbers in arrival order, duplicates
    included; without it the arrival order is taken from ``recv_ns`` and no duplicates can be seen.
    With ``rtp_ts`` and ``clock_rate`` the jitter uses RTP timestamp spacing, as a receiver computes it
    (sender scheduling jitter included); otherwise the send times.
    """
    seq = np.asarray(seq, dtype=np.int64)
    send = np.asarray(send_ns, dtype=np.int64)
    recv = np.asarray(recv_ns, dtype=np.int64)
    if not (seq.shape == send.shape == recv.shape):
        raise ValueError(
            f"seq, send_ns and recv_ns must have one entry per sent packet: shapes "
            f"{seq.shape}, {send.shape}, {recv.shape}"
        )
    # One row per sequence number: of repeated rows (a tap seeing a copy) keep the earliest reception.
    recv_key = np.where(recv >= 0, recv, np.iinfo(np.int64).max)
    order = np.lexsort((recv_key, seq))
    first = np.ones(order.size, dtype=bool)
    first[1:] = seq[order][1:] != seq[order][:-1]
    order = order[first]
    seq, send, recv = seq[order], send[order], recv[order]
    if rtp_ts is not None:
        if not clock_rate:
            raise ValueError("rtp_ts needs clock_rate (e.g. 48000 for opus, 8000 for PCMU/PCMA/G.722)")
        ticks = extended_timestamp(np.asarray(rtp_ts, dtype=np.int64)[order])
        sender_ns: npt.NDArray[Any] = (ticks - (ticks[0] if ticks.size else 0)) * (1e9 / clock_rate)
    else:
        sender_ns = send

    lost_mask = recv < 0
    runs = loss_runs(lost_mask)
    sent = int(seq.size)
    lost = int(lost_mask.sum())
    loss = LossStats(
        sent=sent,
        received=sent - lost,
        lost=lost,
        fraction=lost / sent if sent else 0.0,
        runs=int(runs.size),
        mean_burst=float(runs.mean()) if runs.size else 0.0,
        max_burst=int(runs.max()) if runs.size else 0,
        burst_ratio=burst_ratio(lost_mask),
    )

    rx = np.flatnonzero(~lost_mask)
    delay_ms = (recv[rx] - send[rx]) / 1e6
    by_arrival = rx[np.lexsort((seq[rx], recv[rx]))]
    running_jitter_ms = rfc3550_jitter(recv[by_arrival], sender_ns[by_arrival]) / 1e6
    jitter = JitterStats(
        final_ms=float(running_jitter_ms[-1]) if rx.size else float("nan"),
        mean_ms=float(running_jitter_ms.mean()) if rx.size else float("nan"),
        max_ms=float(running_jitter_ms.max()) if rx.size else float("nan"),
    )

    if arrival_seq is not None:
        arrivals = np.asarray(arrival_seq, dtype=np.int64)
        _, first = np.unique(arrivals, return_index=True)
        duplicates = int(arrivals.size - first.size)
        reordered = _reordered(arrivals[np.sort(first)])
    else:
        duplicates = 0
        reordered = _reordered(seq[by_arrival])

    return NetStats(
        loss=loss,
        delay=_percentiles(delay_ms),
        jitter=jitter,
        reordered=reordered,
        duplicates=duplicates,
        per_second=_series(send, recv, lost_mask, by_arrival, running_jitter_ms, bin_s),
        loss_bins=loss_bins(send, lost_mask),
    )


def loss_bins(send: IntArray, lost: npt.NDArray[np.bool_], bin_s: float = LOSS_BIN_S) -> LossBins:
    """Sent and lost packets per ``bin_s`` of send time (``LossBins``)."""
    if send.size == 0:
        return LossBins(bin_s, [], [])
    bins = (send - send.min()) // int(bin_s * 1e9)
    sent = np.bincount(bins)
    lost_counts = np.bincount(bins, weights=lost.astype(np.int64), minlength=sent.size)
    return LossBins(bin_s, [int(n) for n in sent], [int(n) for n in lost_counts])


def _series(
    send: IntArray,
    recv: IntArray,
    lost: npt.NDArray[np.bool_],
    by_arrival: IntArray,
    running_jitter_ms: npt.NDArray[np.float64],
    bin_s: float,
) -> SecondSeries:
    """Per-bin loss, delay and jitter, binned by send time so congestion shows where it was caused."""
    if send.size == 0:
        return SecondSeries([], [], [], [], [], [], [])
    t0 = send.min()
    bins = ((send - t0) // int(bin_s * 1e9)).astype(np.int64)
    count = int(bins.max()) + 1
    arrival_bins = bins[by_arrival]  # the bin of each arrival, in arrival order (as running_jitter_ms)
    out: dict[str, list[Any]] = {
        k: [] for k in ("start_s", "sent", "lost", "loss_fraction", "mean_delay_ms", "p95_delay_ms", "jitter_ms")
    }
    for b in range(count):
        in_bin = bins == b
        n = int(in_bin.sum())
        n_lost = int((lost & in_bin).sum())
        d = (recv[in_bin & ~lost] - send[in_bin & ~lost]) / 1e6
        j = running_jitter_ms[arrival_bins == b]
        out["start_s"].append(round(b * bin_s, 6))
        out["sent"].append(n)
        out["lost"].append(n_lost)
        out["loss_fraction"].append(n_lost / n if n else float("nan"))
        out["mean_delay_ms"].append(float(d.mean()) if d.size else float("nan"))
        out["p95_delay_ms"].append(float(np.percentile(d, 95)) if d.size else float("nan"))
        out["jitter_ms"].append(float(j[-1]) if j.size else float("nan"))
    return SecondSeries(**out)
