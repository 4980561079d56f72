"""Windowed threshold rules (``Threshold.window``): a metric's value in every window of a call direction,
the way the vendors define their targets, from the per-packet truth as scoring kept it.

Series: loss from packets sent and lost per 0.1 s of send time (``NetworkStats.loss_bins``), a window's
loss being its lost packets over its sent ones; jitter (RFC 3550, as it stood at each second's last
arrival), mean one-way delay and the E-model's per-second MOS per second, a window's value being the
mean of its seconds; rtt per second, this direction's mean delay plus the reverse direction's in the
same second of each direction's send time. Windows slide by one bin. A window longer than the call is
the whole call, as one window. With ``samples: K`` a window fails when K or more of its one-second
samples break the bound (Twilio: 3 of 5), and the first such window is named; otherwise the worst
window is named, and how many windows broke the bound. At 50 packets/s a 200 ms window holds 10
packets, so "loss <= 10% in any 200 ms" fails on a second loss within two adjacent 0.1 s bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testbed.results.metrics import reverse_direction
from testbed.results.scores import CallScores, DirectionScores
from testbed.scenario.thresholds import Threshold

SECOND = 1.0


@dataclass(frozen=True)
class Series:
    """One direction's samples of a metric, ``step_s`` apart from its first packet (NaN: no value)."""

    step_s: float
    values: np.ndarray  # per step: the metric (or, for loss, lost packets)
    weights: np.ndarray | None = None  # loss: packets sent per step (a window's value: sum / sum)


@dataclass(frozen=True)
class WindowResult:
    """How a direction's windows fared: the window named (worst, or the first that broke the bound)."""

    passed: bool
    value: float | None  # the named window's value (samples mode: its samples' worst value)
    start_s: float
    end_s: float
    broken: int  # windows that broke the bound
    windows: int
    over_samples: int = 0  # samples mode: samples breaking the bound in the named window


def series(call: CallScores, direction: DirectionScores, metric: str, per_second: bool) -> Series | None:
    """The metric's series for this direction (None where scoring kept none)."""
    network = direction.network
    if metric == "mos_emodel":
        values = direction.per_second.mos_emodel
        return Series(SECOND, np.asarray(values, float)) if values else None
    if network is None:
        return None
    seconds = network.per_second
    if metric == "loss":
        if per_second or network.loss_bins is None:
            lost, sent, step = seconds.lost, seconds.sent, SECOND
        else:
            lost, sent, step = network.loss_bins.lost, network.loss_bins.sent, network.loss_bins.bin_s
        return Series(step, np.asarray(lost, float), np.asarray(sent, float)) if sent else None
    if metric == "jitter":
        return Series(SECOND, _floats(seconds.jitter_ms))
    if metric == "mean_delay":
        return Series(SECOND, _floats(seconds.mean_delay_ms))
    if metric == "rtt":
        reverse = reverse_direction(call, direction)
        if reverse is None or reverse.network is None:
            return None
        there, back = _floats(seconds.mean_delay_ms), _floats(reverse.network.per_second.mean_delay_ms)
        n = min(there.size, back.size)
        return Series(SECOND, there[:n] + back[:n]) if n else None
    raise ValueError(f"no series for {metric!r}")


def _floats(values: list[float | None]) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], float)


def _breaks(values: np.ndarray, rule: Threshold) -> np.ndarray:
    """Which values break the rule's bound (NaN never does: no value, nothing to judge)."""
    broken = np.zeros(values.shape, bool)
    with np.errstate(invalid="ignore"):
        if rule.min is not None:
            broken |= values < rule.min
        if rule.max is not None:
            broken |= values > rule.max
    return broken


def window_values(data: Series, width: int) -> np.ndarray:
    """Each window's value (``width`` steps, sliding by one; the whole series when it is shorter)."""
    width = min(width, data.values.size)
    if data.weights is not None:  # loss: lost / sent in percent
        lost = np.convolve(data.values, np.ones(width), "valid")
        sent = np.convolve(data.weights, np.ones(width), "valid")
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(sent > 0, 100.0 * lost / sent, np.nan)
    valid = ~np.isnan(data.values)
    sums = np.convolve(np.where(valid, data.values, 0.0), np.ones(width), "valid")
    counts = np.convolve(valid.astype(float), np.ones(width), "valid")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def evaluate_windows(data: Series, rule: Threshold) -> WindowResult:
    """The rule over every window of the series (see the module docstring)."""
    assert rule.window is not None
    width = max(1, round(rule.window / data.step_s))
    if rule.samples is not None:
        samples = data.values if data.weights is None else _sample_loss(data)
        broken_samples = _breaks(samples, rule).astype(float)
        width = min(width, samples.size)
        counts = np.convolve(broken_samples, np.ones(width), "valid")
        failing = np.flatnonzero(counts >= rule.samples)
        first = int(failing[0]) if failing.size else int(np.argmax(counts))
        in_window = samples[first : first + width]
        worst = _worst(in_window, rule)
        return WindowResult(
            not failing.size, worst, first * data.step_s, (first + width) * data.step_s,
            int(failing.size), int(counts.size), int(counts[first]),
        )  # fmt: skip
    values = window_values(data, width)
    broken = _breaks(values, rule)
    if np.all(np.isnan(values)):
        return WindowResult(True, None, 0.0, width * data.step_s, 0, int(values.size))
    index = int(np.nanargmin(values) if rule.min is not None and rule.max is None else np.nanargmax(values))
    width = min(width, data.values.size)
    return WindowResult(
        not broken.any(), float(values[index]), index * data.step_s, (index + width) * data.step_s,
        int(broken.sum()), int(values.size),
    )  # fmt: skip


def _sample_loss(data: Series) -> np.ndarray:
    assert data.weights is not None
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(data.weights > 0, 100.0 * data.values / data.weights, np.nan)


def _worst(values: np.ndarray, rule: Threshold) -> float | None:
    if not values.size or np.all(np.isnan(values)):
        return None
    return float(np.nanmin(values) if rule.min is not None and rule.max is None else np.nanmax(values))
