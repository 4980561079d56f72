"""NetEq's dry buffer: a packet held up with everything behind it is waited for (concealment until it
comes), played, and the wait is accelerated away; an overtaken packet stays late. Accelerate cuts
whole pitch periods, only where the audio is periodic or quiet."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.media.encoded_clip import encoded_clip
from testbed.scoring.neteq import take_back
from testbed.scoring.playout import LATE, PLAYED, playout, schedule, simulate_arrivals

FRAME_MS = 20.0


def queued_spike(frames: int, at: int, spike_ms: float, base_ms: float = 10.0) -> np.ndarray:
    """Packet ``at`` held ``spike_ms``; the ones behind it queue (none overtakes)."""
    delays = np.full(frames, base_ms)
    delays[at] += spike_ms
    for k in range(at + 1, frames):
        delays[k] = max(delays[k], delays[k - 1] - FRAME_MS)
    return delays


def test_a_held_up_queue_is_waited_for_played_and_caught_up():
    payloads = encoded_clip("opus", "gateway")
    packets = simulate_arrivals(payloads, "opus", queued_spike(1000, 600, 60))
    sched = schedule(packets, "opus")
    assert sched.expand is not None and sched.catch_up_ns is not None
    assert sched.status[600] == PLAYED and sched.count(LATE) == 0
    assert sched.expand[600] >= 1 and sched.expand.sum() == sched.expand[600]
    assert sched.catch_up_ns.sum() == sched.expand.sum() * 20_000_000  # all of the wait is taken back
    heard = playout(packets, "opus")
    assert heard.expanded == sched.expand[600] and heard.late == 0
    assert heard.effective_loss == pytest.approx(heard.expanded / heard.frames)
    assert heard.audio.size == heard.frames * 320  # back on the sender's timeline


def test_an_overtaken_packet_is_late_not_waited_for():
    payloads = encoded_clip("opus", "gateway")
    delays = np.full(1000, 10.0)
    delays[600] = 70.0  # the ones behind it arrive first: NetEq moves on
    sched = schedule(simulate_arrivals(payloads, "opus", delays), "opus")
    assert sched.status[600] == LATE and sched.expand is not None and not sched.expand.any()


def test_accelerate_cuts_whole_periods_of_a_voiced_signal():
    rate = 16000
    tone = (8000 * np.sin(2 * np.pi * 200 * np.arange(rate) / rate)).astype(np.int16)  # 5 ms period
    out = take_back(tone, rate, np.array([1600]), np.array([640]))
    assert out.size == tone.size - 640  # 40 ms: eight 5 ms periods
    assert np.array_equal(out[:1600], tone[:1600])
    assert np.abs(out.astype(float)[-4000:]).max() > 7000  # still the tone, not a gap


def test_accelerate_leaves_noise_alone_and_cuts_silence():
    rate = 16000
    noise = np.random.default_rng(1).normal(0, 3000, rate).astype(np.int16)
    assert take_back(noise, rate, np.array([0]), np.array([640])).size == noise.size
    silence = np.zeros(rate, dtype=np.int16)
    assert take_back(silence, rate, np.array([0]), np.array([640])).size == rate - 640
