"""PESQ scoring, and decode + playout + PESQ end to end on clips encoded with aiortc's own encoders."""

from __future__ import annotations

import numpy as np
import pesq
import pytest

from testbed.media.clips import load_clip
from testbed.media.encoded_clip import encoded_clip
from testbed.scoring.pesq import align, looped_reference, pesq_score, resample
from testbed.scoring.playout import FixedBuffer, playout, simulate_arrivals

WB_CEILING, NB_CEILING = 4.644, 4.549  # PESQ of the clips against themselves (clips README)


def clip(rate, role="client"):
    return load_clip(role, rate)


def frames_zeroed(audio, rate, fraction, seed):
    out = audio.copy()
    size = rate // 50
    n = out.size // size
    for i in np.flatnonzero(np.random.default_rng(seed).random(n) < fraction):
        out[i * size : (i + 1) * size] = 0
    return out


def call(codec, loss=0.0, seed=0, frames=None, delays=None, buffer=None, concealment="plc"):
    """One simulated call direction: aiortc-encoded client clip over a network with random loss."""
    payloads = encoded_clip(codec, "client")
    n = frames or len(payloads)
    lost = np.random.default_rng(seed).random(n) < loss
    lost[[0, -1]] = False
    packets = simulate_arrivals(payloads, codec, np.full(n, 30.0) if delays is None else delays, lost)
    kwargs = {} if buffer is None else {"buffer": buffer}
    result = playout(packets, codec, concealment=concealment, **kwargs)
    score = pesq_score(
        result.audio, result.rate, clip(16000 if result.rate == 16000 else 8000), result.rate, loop_frames=len(payloads)
    )
    return result, score


# ------------------------------------------------------------------ the scorer itself


@pytest.mark.parametrize("role", ["client", "gateway"])
def test_clip_against_itself_is_the_ceiling_and_equals_the_pesq_package(role):
    wb, nb = clip(16000, role), clip(8000, role)
    ours_wb = pesq_score(wb, 16000, wb, 16000)
    ours_nb = pesq_score(nb, 8000, nb, 8000)
    assert ours_wb.mode == "wb" and ours_nb.mode == "nb"
    assert ours_wb.mos == pesq.pesq(16000, wb, wb, "wb")
    assert ours_nb.mos == pesq.pesq(8000, nb, nb, "nb")
    assert ours_wb.mos == pytest.approx(WB_CEILING, abs=0.01)
    assert ours_nb.mos == pytest.approx(NB_CEILING, abs=0.01)
    assert ours_wb.lag_samples == 0 and len(ours_wb.segments) == 1


def test_zeroed_frames_score_lower():
    wb = clip(16000)
    light = pesq_score(frames_zeroed(wb, 16000, 0.02, seed=1), 16000, wb, 16000).mos
    heavy = pesq_score(frames_zeroed(wb, 16000, 0.05, seed=1), 16000, wb, 16000).mos
    assert heavy < light < WB_CEILING - 0.3


@pytest.mark.parametrize("shift", [1, 1234, 16000 * 3 + 7])
def test_alignment_recovers_a_known_shift(shift):
    wb = clip(16000)
    period = looped_reference(wb, 16000, 545 * 320)  # one loop as the sender sends it
    # the listener's audio starts `shift` samples into the loop (e.g. the first packets were lost)
    degraded = looped_reference(wb, 16000, 20 * 16000, lag=shift)
    noisy = degraded + np.random.default_rng(2).normal(0, 30, degraded.size).astype(np.int16)  # -61 dBov
    assert align(noisy, period) == shift
    assert align(degraded[::-1], period) != shift  # it really is the correlation that finds it
    result = pesq_score(degraded, 16000, wb, 16000)
    assert result.lag_samples == shift
    assert result.mos == pytest.approx(WB_CEILING, abs=0.03)  # unaligned, the 3 s shift scores 2.1


def test_a_delayed_start_is_aligned_before_pesq():
    wb = clip(16000)
    delayed = np.concatenate([np.zeros(800, np.int16), wb])[: wb.size]  # 50 ms late, as a codec delay
    result = pesq_score(delayed, 16000, wb, 16000)
    assert result.lag_samples == wb.size - 800
    assert result.mos == pytest.approx(WB_CEILING, abs=0.02)


@pytest.mark.parametrize(
    ("audio", "reason"),
    [
        (np.zeros(16000 * 10, np.int16), "no speech"),
        (np.zeros(0, np.int16), "no audio"),
        (np.random.default_rng(3).integers(-1, 2, 16000 * 10).astype(np.int16), "no speech"),
    ],
)
def test_silence_says_no_speech_instead_of_raising(audio, reason):
    result = pesq_score(audio, 16000, clip(16000), 16000)
    assert result.mos is None
    assert reason in result.reason, result.reason


def test_long_calls_are_scored_in_clip_length_segments():
    wb = clip(16000)
    period = 545 * 320
    degraded = looped_reference(wb, 16000, 3 * period + 5000, lag=period - 104)  # 104 samples of codec delay
    result = pesq_score(degraded, 16000, wb, 16000)
    assert len(result.segments) == 3  # the short pieces at both ends join their neighbours
    assert all(s == pytest.approx(WB_CEILING, abs=0.02) for s in result.segments)
    assert result.scored_s == pytest.approx(degraded.size / 16000)


def test_a_silent_stretch_in_a_long_call_counts_at_the_floor():
    wb = clip(16000)
    degraded = looped_reference(wb, 16000, 3 * wb.size)
    degraded[wb.size : 2 * wb.size] = 0  # the second loop never arrived
    result = pesq_score(degraded, 16000, wb, 16000)
    assert result.silent_segments == 1 and result.segments[1] == 1.0
    assert result.mos == pytest.approx((2 * WB_CEILING + 1.0) / 3, abs=0.02)


def test_narrowband_audio_is_resampled_for_wideband_scoring():
    nb, wb = clip(8000), clip(16000)
    up = resample(nb, 8000, 16000)
    assert up.size == wb.size
    result = pesq_score(nb, 8000, wb, 16000)
    assert result.mode == "wb" and result.lag_samples in (0, 1, wb.size - 1)
    assert 3.0 < result.mos < WB_CEILING  # the 4-8 kHz band is missing
    with pytest.raises(ValueError, match="16 kHz"):
        pesq_score(nb, 8000, nb, 8000, mode="wb")


# ------------------------------------------------------------------ end to end: encode, lose, play out, score


def test_opus_without_loss_scores_near_transparent():
    result, score = call("opus")
    assert result.effective_loss == 0
    assert score.mos >= 4.2
    loop = len(encoded_clip("opus", "client")) * 320
    assert score.lag_samples == loop - 104  # libopus's 6.5 ms delay (312 samples at 48 kHz), found by alignment


def test_opus_loss_with_plc_is_lower_but_better_than_zero_filled_frames():
    _, clean = call("opus")
    lossy, plc = call("opus", loss=0.05, seed=21)
    _, zero = call("opus", loss=0.05, seed=21, concealment="silence")
    assert 0.03 < lossy.effective_loss < 0.07
    assert zero.mos < plc.mos < clean.mos


@pytest.mark.parametrize("codec", ["pcmu", "pcma", "g722"])
def test_g711_and_g722_concealment_beats_silence(codec):
    _, clean = call(codec)
    _, plc = call(codec, loss=0.05, seed=22)
    _, zero = call(codec, loss=0.05, seed=22, concealment="silence")
    assert zero.mos < plc.mos < clean.mos
    assert clean.mode == ("wb" if codec == "g722" else "nb")


def test_pcmu_without_loss_scores_like_g711():
    _, score = call("pcmu")
    assert 3.9 < score.mos < NB_CEILING  # G.711 is near-transparent for PESQ-NB (about 4.1 here)


def test_a_30ms_buffer_under_40ms_jitter_sounds_worse_than_a_120ms_one():
    n = len(encoded_clip("opus", "client"))
    delays = 60 + np.random.default_rng(3).uniform(-40, 40, n)
    shallow, shallow_score = call("opus", delays=delays, buffer=FixedBuffer(30))
    deep, deep_score = call("opus", delays=delays, buffer=FixedBuffer(120))
    assert shallow.late > 50 and deep.late == 0
    assert shallow_score.mos < deep_score.mos - 0.5
