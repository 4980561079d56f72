"""A browser listener's own account: what Chromium played out and what its ``getStats()`` said, turned
into the figures that stand beside the playout model's (docs/design.md, "A browser as the listener").

Chrome's figures are taken at the moment the harness stopped the call's media (the page snapshots
``getStats()`` then), so the silence NetEq conceals between the last packet and the hang-up is not
counted as loss. The played audio is cut to the same span as the model's: from the first packet's
arrival at the listener's interface to the last one's plus Chrome's mean buffer delay (less a frame,
``TAIL_NS``), so both are scored over the same talk time. Pure: arrays and dicts in, numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from testbed.results.scores import BrowserFigures
from testbed.scoring.pesq import resample

# The span ends a frame before the last packet's expected playout: ending early costs nothing (both
# signals are cut alike), but the first 20-40 ms of NetEq's concealment after the last packet cost
# PESQ 0.3-0.4 (measured; with them, Chrome seemed to play 0.1-0.5 worse than the model).
TAIL_NS = -20_000_000


@dataclass(frozen=True)
class BrowserListener:
    """What a browser receiver handed over at hang-up."""

    audio: npt.NDArray[np.int16]  # played-out samples, in the order Chromium delivered them
    rate: int
    lengths: npt.NDArray[np.int64]  # samples per delivered chunk
    read_ns: npt.NDArray[np.int64]  # epoch ns at which each chunk was read in the page
    inbound: dict[str, Any]  # getStats() inbound-rtp (audio) at media stop
    pair: dict[str, str | None] = field(default_factory=dict)  # the selected pair, as LegSummary.candidate_pair
    version: str = ""


def uniform_rate(
    audio: npt.NDArray[np.int16], lengths: npt.NDArray[np.int64], rates: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int64], int]:
    """Chunks at mixed rates (Chromium delivers silence at 48 kHz until the first packet, then the
    decoder's rate: 8 kHz for G.711, 16 kHz for G.722) -> one rate, the one most of the time is at;
    returns the audio, each chunk's new length and that rate."""
    if lengths.size == 0:
        return audio, lengths, 48_000
    seconds = {int(r): float((lengths[rates == r] / r).sum()) for r in np.unique(rates)}
    rate = max(seconds, key=lambda r: seconds[r])
    if len(seconds) == 1:
        return audio, lengths, rate
    ends = np.cumsum(lengths)
    pieces, new_lengths = [], []
    for end, length, chunk_rate in zip(ends.tolist(), lengths.tolist(), rates.tolist(), strict=True):
        chunk = audio[end - length : end]
        if chunk_rate != rate:
            chunk = resample(chunk, chunk_rate, rate)
        pieces.append(chunk)
        new_lengths.append(chunk.size)
    return np.concatenate(pieces).astype(np.int16), np.asarray(new_lengths, np.int64), rate


def _ratio(numerator: Any, denominator: Any, scale: float = 1.0) -> float | None:
    if not denominator:
        return None
    return round(float(numerator or 0) / float(denominator) * scale, 5)


def browser_figures(listener: BrowserListener) -> BrowserFigures:
    s = listener.inbound
    return BrowserFigures(
        packets_received=int(s.get("packetsReceived", 0)),
        packets_lost=int(s.get("packetsLost", 0)),
        packets_discarded=int(s.get("packetsDiscarded", 0)),
        jitter_ms=None if s.get("jitter") is None else round(1000 * float(s["jitter"]), 3),
        mean_jitter_buffer_ms=_ratio(s.get("jitterBufferDelay"), s.get("jitterBufferEmittedCount"), 1000),
        target_jitter_buffer_ms=_ratio(s.get("jitterBufferTargetDelay"), s.get("jitterBufferEmittedCount"), 1000),
        concealed_fraction=_ratio(s.get("concealedSamples"), s.get("totalSamplesReceived")),
        silent_concealed_samples=int(s.get("silentConcealedSamples", 0)),
        concealment_events=int(s.get("concealmentEvents", 0)),
        inserted_samples=int(s.get("insertedSamplesForDeceleration", 0)),
        removed_samples=int(s.get("removedSamplesForAcceleration", 0)),
        fec_packets_received=int(s.get("fecPacketsReceived", 0)),
        fec_packets_discarded=int(s.get("fecPacketsDiscarded", 0)),
        candidate_pair=dict(listener.pair),
        version=listener.version,
    )


def played_span(listener: BrowserListener, start_ns: int, end_ns: int) -> npt.NDArray[np.int16]:
    """The played samples of the chunks read between ``start_ns`` and ``end_ns`` (epoch ns)."""
    if listener.audio.size == 0 or listener.lengths.size == 0:
        return listener.audio[:0]
    ends = np.cumsum(listener.lengths)
    starts = ends - listener.lengths
    keep = (listener.read_ns >= start_ns) & (listener.read_ns <= end_ns)
    if not keep.any():
        return listener.audio[:0]
    first, last = int(np.argmax(keep)), int(len(keep) - 1 - np.argmax(keep[::-1]))
    return listener.audio[int(starts[first]) : int(ends[last])]


def talk_span(listener: BrowserListener, arrivals_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.int16]:
    """The played audio over the model's span: first arrival to the last plus Chrome's buffer delay."""
    if arrivals_ns.size == 0:
        return listener.audio[:0]
    buffer_ms = browser_figures(listener).mean_jitter_buffer_ms or 0.0
    return played_span(listener, int(arrivals_ns.min()), int(arrivals_ns.max() + buffer_ms * 1e6 + TAIL_NS))
