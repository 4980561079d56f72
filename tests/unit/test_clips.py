"""The shipped reference speech clips: length, padding, rate, level, PESQ behaviour."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from pesq import pesq

from testbed.media.clips import CLIPS, RATES, clip_path, load_clip, make_clips
from testbed.media.clips.make_clips import active_speech_level

ROLES = sorted(CLIPS)
ROLE_RATES = [(role, rate) for role in ROLES for rate in RATES]
PESQ_MODE = {16000: "wb", 8000: "nb"}


def frame_dbov(x: np.ndarray, rate: int, frame_s: float = 0.01) -> np.ndarray:
    n = round(frame_s * rate)
    frames = x[: len(x) // n * n].astype(np.float64).reshape(-1, n)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12) - 20 * np.log10(32768)


def same_length(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(a), len(b))
    return a[:n], b[:n]


def f0_median(x: np.ndarray, rate: int) -> float:
    """Median pitch of the loud frames, by autocorrelation: enough to tell a male from a female voice."""
    n, lo, hi = round(0.04 * rate), rate // 400, rate // 60
    frames = [x[i : i + n].astype(np.float64) for i in range(0, len(x) - n, n // 2)]
    loud = max(float(f @ f) for f in frames) * 0.05
    pitches = []
    for f in frames:
        if f @ f < loud:
            continue
        f = f - f.mean()
        ac = np.correlate(f, f, "full")[n - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5 * ac[0]:
            pitches.append(rate / lag)
    return float(np.median(pitches))


# --- the API ----------------------------------------------------------------------------------------


def test_roles_and_specs_agree():
    assert ROLES == ["client", "gateway"]
    specs = {s.role: s for s in make_clips.SPECS}
    assert set(specs) == set(CLIPS)
    for role, clip in CLIPS.items():
        assert clip.role == role
        assert clip.voice == specs[role].voice
        for rate in RATES:
            assert clip.path(rate) == clip_path(role, rate)
            assert clip_path(role, rate).name == make_clips.wav_name(role, rate)
    assert sorted(make_clips.OUTPUT_RATES) == sorted(RATES)


def test_unknown_role_or_rate_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown clip role 'server'.*client.*gateway"):
        clip_path("server", 16000)
    with pytest.raises(ValueError, match="no client clip at 48000 Hz.*8000.*16000"):
        load_clip("client", 48000)


@pytest.mark.parametrize("role,rate", ROLE_RATES)
def test_files_are_mono_16bit_pcm_at_their_rate(role, rate):
    import wave

    with wave.open(str(clip_path(role, rate)), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getcomptype()) == (1, 2, rate, "NONE")
    x = load_clip(role, rate)
    assert x.dtype == np.int16 and x.ndim == 1


# --- the audio --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role,rate", ROLE_RATES)
def test_duration_is_8_to_12_s(role, rate):
    assert 8.0 <= len(load_clip(role, rate)) / rate <= 12.0


@pytest.mark.parametrize("role,rate", ROLE_RATES)
def test_half_to_one_second_of_silence_at_both_ends(role, rate):
    db = frame_dbov(load_clip(role, rate), rate)
    loud = np.flatnonzero(db > -60.0)  # speech frames are ~-26 dBov; the padding is digital silence
    lead_s = loud[0] * 0.01
    trail_s = (len(db) - 1 - loud[-1]) * 0.01
    assert 0.5 <= lead_s <= 1.0
    assert 0.5 <= trail_s <= 1.0
    assert db[loud[0]] > -60.0 and np.max(db) > -20.0  # real speech right after the padding


@pytest.mark.parametrize("role,rate", ROLE_RATES)
def test_active_speech_level_is_minus_26_dbov(role, rate):
    x = load_clip(role, rate)
    assert active_speech_level(x, rate) == pytest.approx(-26.0, abs=1.0)
    # cross-check without P.56: plain RMS over the 20 ms frames within 30 dB of the loudest one
    db = frame_dbov(x, rate, 0.02)
    voiced = db > db.max() - 30.0
    rms_dbov = 10 * np.log10(np.mean(10 ** (db[voiced] / 10)))
    assert rms_dbov == pytest.approx(-26.0, abs=1.5)
    assert np.abs(x.astype(np.int32)).max() < 32767  # no clipping


def test_p56_meter_on_a_tone_burst():
    rate = 16000
    t = np.arange(8 * rate) / rate  # long, so the 0.2 s hangover adds little (~0.1 dB)
    amplitude = 32768 * 10 ** (-20 / 20) * np.sqrt(2)  # a -20 dBov sine
    burst = np.concatenate([np.zeros(rate), amplitude * np.sin(2 * np.pi * 440 * t), np.zeros(2 * rate)])
    assert active_speech_level(burst, rate) == pytest.approx(-20.0, abs=0.25)
    assert active_speech_level(np.zeros(rate), rate) == float("-inf")


@pytest.mark.parametrize("rate", RATES)
def test_the_two_clips_are_different_speech(rate):
    a = load_clip("client", rate).astype(np.float64)
    b = load_clip("gateway", rate).astype(np.float64)
    n = len(a) + len(b)
    xcorr = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    assert np.abs(xcorr).max() / (np.linalg.norm(a) * np.linalg.norm(b)) < 0.2


def test_the_two_voices_differ_in_pitch():
    # guards against a voice variant being silently ignored (espeak-ng does that for "en-gb+f3")
    assert f0_median(load_clip("client", 16000), 16000) < 150.0
    assert f0_median(load_clip("gateway", 16000), 16000) > 170.0


# --- PESQ -------------------------------------------------------------------------------------------

SELF_PESQ = {16000: 4.64, 8000: 4.55}  # P.862.2 wb / P.862.1 nb ceiling for identical signals


@pytest.mark.parametrize("role,rate", ROLE_RATES)
def test_pesq_of_a_clip_against_itself_is_the_ceiling(role, rate):
    x = load_clip(role, rate)
    score = pesq(rate, x, x, PESQ_MODE[rate])  # raises pesq.NoUtterancesError if it finds no speech
    assert score == pytest.approx(SELF_PESQ[rate], abs=0.02)


@pytest.mark.parametrize("rate", RATES)
def test_pesq_of_client_against_gateway_is_low(rate):
    ref, deg = same_length(load_clip("client", rate), load_clip("gateway", rate))
    assert pesq(rate, ref, deg, PESQ_MODE[rate]) < 1.5
    assert pesq(rate, deg, ref, PESQ_MODE[rate]) < 1.5


# --- regeneration -----------------------------------------------------------------------------------


def espeak_version() -> str | None:
    if shutil.which("espeak-ng") is None:
        return None
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout
    return out.split()[3] if out.startswith("eSpeak NG text-to-speech:") else out


@pytest.mark.skipif(espeak_version() is None, reason="espeak-ng not installed")
@pytest.mark.parametrize("spec", make_clips.SPECS, ids=lambda s: s.role)
def test_make_clips_rebuilds_the_shipped_files(spec):
    if espeak_version() != "1.51":
        pytest.skip(f"clips were made with espeak-ng 1.51, this is {espeak_version()}")
    for rate, samples in make_clips.make_clip(spec).items():
        shipped = load_clip(spec.role, rate)
        assert samples.shape == shipped.shape
        # bit-exact on the machine that made them; allow 1 LSB for another numpy's FFT rounding
        assert np.abs(samples.astype(np.int32) - shipped).max() <= 1
