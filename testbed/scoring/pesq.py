"""PESQ MOS-LQO of the audio a listener heard against the clip the talker sent.

ITU-T P.862 narrow-band (8 kHz, ``nb``) or P.862.2 wide-band (16 kHz, ``wb``), computed by the ``pesq``
package. Steps, and why:

1. The reference is the clip looped the way the sender looped it: 20 ms frames from clip sample 0, the
   last frame padded with the clip's start, then the next loop (``loop_frames`` frames per loop; pass
   the number of payloads the sender cycles through, e.g. ``len(encoded_clip(codec, role))``, which
   can be a frame shorter than the clip when the encoder holds a frame back).
2. One alignment by cross-correlation: the playout audio (sender's timeline, starting at the earliest
   received packet) is folded onto one loop period and circularly cross-correlated with it, so a lag of
   any size (codec delay, lost first packets) is found in one FFT. PESQ then does its own fine,
   per-utterance alignment; this step only gives it matching segments.
3. Segments: calls longer than 1.5 loops are cut at loop boundaries (the cut falls in the clip's
   silence padding, where PESQ expects the edges of a recording to be), pieces shorter than half a loop
   join their neighbour, so every segment is 0.5-1.5 clip lengths (about 5-16 s; P.862 is specified for
   8-20 s, the ``pesq`` package handles up to ~30 s). The score is the length-weighted mean.
4. No speech: an empty or silent playout, or PESQ finding no utterances, gives ``mos=None`` with the
   reason; never an exception. A segment in which the reference has speech but nothing at all arrived
   scores 1.0 (the scale's floor) in the mean, and is counted in ``silent_segments``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pesq as _pesq

from testbed.codecs import FRAME_S

__all__ = ["PesqResult", "align", "looped_reference", "pesq_score", "resample"]

Mode = Literal["nb", "wb"]
SILENT_DBOV = -70.0  # below this RMS level (dB re full scale) a signal is taken as no speech at all
FLOOR_MOS = 1.0


@dataclass(frozen=True)
class PesqResult:
    mos: float | None  # MOS-LQO, or None when it could not be scored (see reason)
    mode: Mode
    rate: int
    reason: str | None = None  # why mos is None, e.g. "no speech arrived"
    lag_samples: int | None = None  # degraded[k] lines up with reference[(k + lag) mod loop]
    segments: tuple[float, ...] = field(default=())  # MOS per segment
    silent_segments: int = 0
    scored_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "mos": self.mos,
            "mode": self.mode,
            "rate": self.rate,
            "reason": self.reason,
            "lag_samples": self.lag_samples,
            "segments": list(self.segments),
            "silent_segments": self.silent_segments,
            "scored_s": self.scored_s,
        }


def resample(x: npt.ArrayLike, rate_in: int, rate_out: int) -> npt.NDArray[np.int16]:
    """Band-limited FFT resampling (bins above the lower Nyquist dropped); exact for 8 <-> 16 kHz."""
    x = np.asarray(x, dtype=np.float64)
    if rate_in == rate_out or x.size == 0:
        return np.round(x).astype(np.int16)
    n_out = int(round(x.size * rate_out / rate_in))
    spectrum = np.fft.rfft(x)
    keep = min(spectrum.size, n_out // 2 + 1)
    out_spec = np.zeros(n_out // 2 + 1, dtype=complex)
    out_spec[:keep] = spectrum[:keep]
    y = np.fft.irfft(out_spec, n_out) * (n_out / x.size)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def _loop_period(clip: npt.NDArray[np.int16], rate: int, loop_frames: int | None) -> npt.NDArray[np.int16]:
    """One loop of the sender's signal: the clip in 20 ms frames, padded (or cut) to ``loop_frames``."""
    size = int(rate * FRAME_S)
    frames = loop_frames if loop_frames is not None else -(-clip.size // size)
    length = frames * size
    if length <= clip.size:
        return clip[:length]
    reps = -(-length // clip.size)
    return np.tile(clip, reps)[:length]  # clip_frames pads the last frame with the clip's start


def looped_reference(
    clip: npt.ArrayLike, rate: int, n: int, lag: int = 0, loop_frames: int | None = None
) -> npt.NDArray[np.int16]:
    """``n`` samples of the looped reference, starting at loop position ``lag``."""
    period = _loop_period(np.asarray(clip, dtype=np.int16), rate, loop_frames)
    return period[(lag + np.arange(n)) % period.size]


def align(degraded: npt.ArrayLike, period: npt.ArrayLike) -> int:
    """Lag (0 <= lag < len(period)) with degraded[k] ~ period[(k + lag) mod len(period)].

    The degraded signal is folded modulo the period (summing whole loops), then circularly
    cross-correlated with one period by FFT: one alignment for the whole call.
    """
    d = np.asarray(degraded, dtype=np.float64)
    p = np.asarray(period, dtype=np.float64)
    size = p.size
    folded = np.zeros(size)
    whole = d.size // size * size
    if whole:
        folded += d[:whole].reshape(-1, size).sum(axis=0)
    folded[: d.size - whole] += d[whole:]
    corr = np.fft.irfft(np.conj(np.fft.rfft(folded)) * np.fft.rfft(p), size)
    return int(np.argmax(corr))


def _segments(n: int, lag: int, period: int) -> list[tuple[int, int]]:
    """Cut [0, n) at loop boundaries (degraded index k where (k + lag) % period == 0)."""
    if n <= 1.5 * period:
        return [(0, n)]
    cuts = [0, *range((period - lag) % period, n, period), n]
    cuts = sorted(set(cuts))
    pieces = [(a, b) for a, b in zip(cuts, cuts[1:], strict=False)]
    merged: list[tuple[int, int]] = []
    for a, b in pieces:
        if merged and (b - a < period / 2 or merged[-1][1] - merged[-1][0] < period / 2):
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def _level_dbov(x: npt.NDArray[np.int16]) -> float:
    if x.size == 0:
        return -np.inf
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64)))
    return 20 * np.log10(rms / 32768) if rms > 0 else -np.inf


def pesq_score(
    degraded: npt.ArrayLike,
    degraded_rate: int,
    clip: npt.ArrayLike,
    clip_rate: int,
    *,
    mode: Mode | None = None,
    loop_frames: int | None = None,
) -> PesqResult:
    """MOS-LQO of ``degraded`` (playout audio) against the looped ``clip`` (see the module docstring).

    ``mode`` defaults to ``wb`` for a 16 kHz clip and ``nb`` for an 8 kHz one; the degraded audio is
    resampled to the clip's rate when they differ (e.g. G.711 audio scored wide-band).
    """
    mode = mode or ("wb" if clip_rate == 16000 else "nb")
    if mode == "wb" and clip_rate != 16000:
        raise ValueError(f"wide-band PESQ (P.862.2) needs the 16 kHz clip, got {clip_rate} Hz")
    if clip_rate not in (8000, 16000):
        raise ValueError(f"PESQ works at 8000 or 16000 Hz, got {clip_rate}")
    deg = resample(degraded, degraded_rate, clip_rate)
    ref_clip = np.asarray(clip, dtype=np.int16)
    if deg.size == 0:
        return PesqResult(None, mode, clip_rate, reason="no audio: no packet arrived")
    if _level_dbov(deg) < SILENT_DBOV:
        return PesqResult(
            None,
            mode,
            clip_rate,
            reason="no speech arrived (the playout audio is silent)",
            scored_s=deg.size / clip_rate,
        )
    period = _loop_period(ref_clip, clip_rate, loop_frames)
    lag = align(deg, period)
    ref = looped_reference(ref_clip, clip_rate, deg.size, lag, loop_frames)
    scores, weights, silent, reasons = [], [], 0, []
    for a, b in _segments(deg.size, lag, period.size):
        r, d = ref[a:b], deg[a:b]
        if _level_dbov(r) < SILENT_DBOV:
            continue  # nothing was said here: nothing to score
        if _level_dbov(d) < SILENT_DBOV:
            scores.append(FLOOR_MOS)
            weights.append(b - a)
            silent += 1
            continue
        try:
            scores.append(float(_pesq.pesq(clip_rate, r, d, mode)))
            weights.append(b - a)
        except _pesq.NoUtterancesError:
            scores.append(FLOOR_MOS)
            weights.append(b - a)
            silent += 1
        except _pesq.BufferTooShortError:
            reasons.append(f"segment {a / clip_rate:.1f}-{b / clip_rate:.1f} s too short for PESQ")
    if not scores or silent == len(scores):
        return PesqResult(
            None,
            mode,
            clip_rate,
            reason="; ".join(reasons) or "no speech arrived",
            lag_samples=lag,
            silent_segments=silent,
            scored_s=deg.size / clip_rate,
        )
    mos = float(np.average(scores, weights=weights))
    return PesqResult(
        mos,
        mode,
        clip_rate,
        lag_samples=lag,
        segments=tuple(scores),
        silent_segments=silent,
        scored_s=float(sum(weights)) / clip_rate,
    )
