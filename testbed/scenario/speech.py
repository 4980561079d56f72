"""Your own speech as a call's reference: WAV files a scenario names instead of the shipped synthetic
clips (PESQ is specified for natural speech, e.g. ITU-T P.501 material), checked before anything runs
and converted to the rates the testbed sends and scores at (8 and 16 kHz, mono, 16-bit).

A usable reference is 16-bit PCM WAV (mono, or stereo which is mixed down), 8-48 kHz, 4-60 s long,
with speech at an active level between -36 and -16 dBov (P.862 expects about -26 dBov) for at least a
quarter of it, and at most 3 s of silence at either end (the testbed loops the clip: long pauses at
its ends become long pauses in every call).
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from testbed.scenario.files import MAX_WAV_BYTES, InputFileError, read_input_file

RATES = (8000, 16000)
MIN_S, MAX_S = 4.0, 60.0
LEVEL_DBOV = (-36.0, -16.0)
MAX_EDGE_SILENCE_S = 3.0
MIN_ACTIVITY = 0.25
FULL_SCALE = 32768.0


class SpeechError(ValueError):
    """A reference clip that cannot be used, and why."""


@dataclass(frozen=True)
class Speech:
    samples: npt.NDArray[np.float64]  # mono, -1..1
    rate: int
    level_dbov: float  # active speech level (frames within 15.9 dB of the loudest, as a simple P.56 stand-in)
    activity: float  # share of 10 ms frames that are speech
    lead_s: float  # silence before the first speech
    tail_s: float  # silence after the last

    @property
    def seconds(self) -> float:
        return self.samples.size / self.rate


def read_wav(path: Path) -> tuple[npt.NDArray[np.float64], int]:
    try:
        with wave.open(io.BytesIO(read_input_file(path, MAX_WAV_BYTES)), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            data = w.readframes(frames)
    except InputFileError as exc:
        raise SpeechError(str(exc)) from None
    except (wave.Error, EOFError) as exc:
        raise SpeechError(f"not a PCM WAV file ({exc}); convert it to 16-bit PCM WAV") from None
    if width != 2:
        raise SpeechError(f"{8 * width}-bit samples; the testbed takes 16-bit PCM WAV")
    if channels not in (1, 2):
        raise SpeechError(f"{channels} channels; give mono or stereo")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float64) / FULL_SCALE
    if channels == 2:
        samples = samples.reshape(-1, 2).mean(axis=1)
    return samples, rate


def analyse(samples: npt.NDArray[np.float64], rate: int) -> Speech:
    frame = max(1, rate // 100)  # 10 ms
    count = samples.size // frame
    if count == 0:
        return Speech(samples, rate, float("-inf"), 0.0, 0.0, 0.0)
    power = np.mean(samples[: count * frame].reshape(count, frame) ** 2, axis=1)
    loudest = float(power.max())
    if loudest <= 0:
        return Speech(samples, rate, float("-inf"), 0.0, samples.size / rate, 0.0)
    active = power >= loudest / 10 ** (15.9 / 10)  # a P.56-like activity threshold below the peak
    level = 10 * np.log10(float(power[active].mean()) * 2)  # dBov: a full-scale sine is 0 dBov
    where = np.flatnonzero(active)
    return Speech(
        samples,
        rate,
        float(level),
        float(active.mean()),
        float(where[0] * frame / rate),
        float((count - 1 - where[-1]) * frame / rate),
    )


def check(path: Path) -> Speech:
    """The clip at ``path`` if usable; SpeechError naming the problem otherwise."""
    samples, rate = read_wav(path)
    if not 8000 <= rate <= 48000:
        raise SpeechError(f"sampled at {rate} Hz; give 8-48 kHz")
    speech = analyse(samples, rate)
    if not MIN_S <= speech.seconds <= MAX_S:
        raise SpeechError(f"{speech.seconds:.1f} s long; give {MIN_S:g}-{MAX_S:g} s of speech")
    if not np.isfinite(speech.level_dbov) or speech.activity == 0:
        raise SpeechError("silent: no speech in it")
    low, high = LEVEL_DBOV
    if not low <= speech.level_dbov <= high:
        raise SpeechError(
            f"active speech level {speech.level_dbov:.1f} dBov; give {low:g} to {high:g} dBov (P.862 expects about -26)"
        )
    if speech.activity < MIN_ACTIVITY:
        raise SpeechError(f"speech in {100 * speech.activity:.0f}% of it; give at least {100 * MIN_ACTIVITY:.0f}%")
    for where, seconds in (("before the speech", speech.lead_s), ("after the speech", speech.tail_s)):
        if seconds > MAX_EDGE_SILENCE_S:
            raise SpeechError(f"{seconds:.1f} s of silence {where}; trim it to {MAX_EDGE_SILENCE_S:g} s at most")
    return speech


def resample(samples: npt.NDArray[np.float64], rate: int, to: int) -> npt.NDArray[np.int16]:
    """``samples`` at ``to`` Hz as int16, through FFmpeg's resampler (PyAV, which aiortc brings)."""
    import av

    pcm = np.clip(np.round(samples * FULL_SCALE), -32768, 32767).astype(np.int16)
    if rate == to:
        return pcm
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.int16)


def write_rates(speech: Speech, prefix: Path) -> None:
    """``PREFIX-8k.wav`` and ``PREFIX-16k.wav``: what the senders send and scoring compares against."""
    for rate in RATES:
        write_wav(rate_path(prefix, rate), resample(speech.samples, speech.rate, rate), rate)


def rate_path(prefix: Path, rate: int) -> Path:
    """``PREFIX-8k.wav`` or ``PREFIX-16k.wav``: a prepared reference at one rate (``load_clip`` reads it)."""
    return prefix.parent / f"{prefix.name}-{rate // 1000}k.wav"


def write_wav(path: Path, samples: npt.ArrayLike, rate: int) -> None:
    """Mono 16-bit PCM WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype=np.int16).astype("<i2").tobytes())
