"""Regenerate the project's reference speech clips (``python -m testbed.media.clips.make_clips``).

Everything that decides the audio is in this file: the text, the espeak-ng voice and speed, the
silence padding, the resampling filter and the level. espeak-ng is deterministic, so the same
espeak-ng version rebuilds the shipped WAVs bit for bit (another version may move a few samples).

Steps for each clip:

1. espeak-ng speaks the text into a 22050 Hz 16-bit WAV (its native rate).
2. The synthesiser's own leading/trailing silence is cut (first/last sample above -50 dB re peak)
   and exactly ``PAD_S`` of digital silence is put at both ends.
3. The signal is resampled to 16 kHz and to 8 kHz in the frequency domain: one FFT of the whole
   clip, bins above the new Nyquist frequency dropped (so nothing aliases), and a raised-cosine
   roll-off from 90 % to 100 % of the new Nyquist frequency so the cut does not ring.
4. Each rate is levelled on its own to ``TARGET_DBOV`` active speech level, measured by
   :func:`active_speech_level` (ITU-T P.56 method B), then rounded to int16.

Needs the ``espeak-ng`` binary (Debian: ``apt-get install -y --no-install-recommends espeak-ng``)
and numpy; nothing else.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

CLIPS_DIR = Path(__file__).resolve().parent

ESPEAK_RATE = 22050  # espeak-ng's only output rate
OUTPUT_RATES = (16000, 8000)
WORDS_PER_MINUTE = 150  # espeak-ng -s; its default is 175, 150 is a calm talker
PAD_S = 0.75  # digital silence at each end, in seconds
TRIM_DB = -50.0  # re peak: what counts as the synthesiser's own silence when trimming
TARGET_DBOV = -26.0  # active speech level, dB re full scale (20*log10(rms / 32768))
ROLLOFF_START = 0.9  # resampling: pass band edge as a fraction of the new Nyquist frequency

FULL_SCALE = 32768.0


@dataclass(frozen=True)
class ClipSpec:
    role: str  # who sends it: "client" or "gateway"
    voice: str  # espeak-ng -v
    text: str  # our own sentences, written for this project


# Two talkers who can never be mistaken for each other: a US male and a British female.
# NB: espeak-ng 1.51 ignores a variant on "en-gb" ("en-gb+f3" is the plain male voice);
# "en" is British English and does take it.
SPECS: tuple[ClipSpec, ...] = (
    ClipSpec(
        role="client",
        voice="en-us",
        text=(
            "The red kite drifted high above the quiet harbour. "
            "A warm loaf of bread sat on the kitchen shelf. "
            "Fresh paint dries slowly on a cold morning."
        ),
    ),
    ClipSpec(
        role="gateway",
        voice="en+f3",
        text=(
            "The old clock in the hall chimed twice at noon. "
            "She packed two blue cups into a wooden crate. "
            "Turn the brass handle and the door will open."
        ),
    ),
)


def wav_name(role: str, rate: int) -> str:
    return f"{role}-{rate // 1000}k.wav"


def synthesize(spec: ClipSpec) -> npt.NDArray[np.int16]:
    """Speak ``spec.text`` with espeak-ng; mono int16 at ``ESPEAK_RATE``."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng not found: apt-get install -y --no-install-recommends espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        subprocess.run(
            [exe, "-v", spec.voice, "-s", str(WORDS_PER_MINUTE), "-w", str(out), spec.text],
            check=True,
            capture_output=True,
        )
        rate, samples = read_wav(out.read_bytes())
    if rate != ESPEAK_RATE:
        raise RuntimeError(f"espeak-ng wrote {rate} Hz, expected {ESPEAK_RATE} Hz")
    return samples


def read_wav(data: bytes) -> tuple[int, npt.NDArray[np.int16]]:
    with wave.open(io.BytesIO(data), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError("expected mono 16-bit PCM")
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def write_wav(path: Path, rate: int, samples: npt.NDArray[np.int16]) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def trim_and_pad(x: npt.ArrayLike, rate: int) -> npt.NDArray[np.float64]:
    """Cut the synthesiser's own silence, then put exactly ``PAD_S`` of zeros at both ends."""
    x = np.asarray(x, dtype=np.float64)
    loud = np.flatnonzero(np.abs(x) > np.abs(x).max() * 10 ** (TRIM_DB / 20))
    speech = x[loud[0] : loud[-1] + 1]
    pad = np.zeros(round(PAD_S * rate))
    return np.concatenate([pad, speech, pad])


def resample(x: npt.NDArray[np.floating], rate_in: int, rate_out: int) -> npt.NDArray[np.float64]:
    """Band-limited resampling by FFT with a raised-cosine roll-off below the new Nyquist frequency.

    The FFT treats the clip as periodic; the silence at both ends makes that harmless. The input is
    zero-padded to a length whose output length is an exact integer, so the time axis is not
    stretched.
    """
    g = np.gcd(rate_in, rate_out)
    step_in, step_out = rate_in // g, rate_out // g
    n_in = -(-len(x) // step_in) * step_in
    n_out = n_in // step_in * step_out
    spectrum = np.fft.rfft(np.asarray(x, dtype=np.float64), n_in)
    nyquist = min(rate_in, rate_out) / 2
    freqs = np.fft.rfftfreq(n_out, 1 / rate_out)
    start = ROLLOFF_START * nyquist
    response = np.clip((nyquist - freqs) / (nyquist - start), 0.0, 1.0)
    response = np.sin(response * np.pi / 2) ** 2  # 1 in the pass band, cos^2 roll-off to 0 at Nyquist
    bins = min(len(spectrum), len(freqs))
    out_spectrum = np.zeros(len(freqs), dtype=complex)
    out_spectrum[:bins] = spectrum[:bins] * response[:bins]
    out: npt.NDArray[np.float64] = np.fft.irfft(out_spectrum, n_out) * (n_out / n_in)
    return out


def active_speech_level(x: npt.ArrayLike, rate: int) -> float:
    """Active speech level in dBov (dB re 32768, i.e. 20*log10(rms / 32768)) by ITU-T P.56 method B.

    ``x`` is in int16 units (float or int). An envelope (two one-pole smoothers, 30 ms) is compared
    with thresholds 2**j, j = 0..15; a sample counts as active for threshold j if the envelope was
    above it within the last 200 ms (hangover). For each threshold the level is the energy over its
    active samples; the active level is where that level is 15.9 dB above the threshold
    (interpolated in dB between neighbouring thresholds).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or not np.any(x):
        return float("-inf")
    g = np.exp(-1.0 / (rate * 0.03))
    hangover = round(0.2 * rate)
    margin_db = 15.9

    p = q = 0.0
    envelope = np.empty_like(x)
    for i, a in enumerate(np.abs(x).tolist()):
        p = g * p + (1 - g) * a
        q = g * q + (1 - g) * p
        envelope[i] = q

    energy = float(np.dot(x, x))
    thresholds = 2.0 ** np.arange(16)
    level_db = np.full(len(thresholds), -np.inf)
    excess_db = np.full(len(thresholds), -np.inf)  # level above threshold
    for j, c in enumerate(thresholds):
        above = np.concatenate([[0], np.cumsum(envelope >= c)])
        # active at n if the envelope was >= c anywhere in [n - hangover, n]
        n = np.arange(1, len(x) + 1)
        active = int(np.count_nonzero(above[n] - above[np.maximum(n - hangover - 1, 0)]))
        if active == 0:
            break
        level_db[j] = 10 * np.log10(energy / active)
        excess_db[j] = level_db[j] - 20 * np.log10(c)
    if excess_db[0] <= margin_db:
        active_db = level_db[0]
    else:
        j = int(np.argmax(excess_db <= margin_db))  # first threshold with less than the margin
        if excess_db[j] > margin_db:  # never reached (cannot happen for int16 speech)
            active_db = level_db[np.isfinite(level_db)][-1]
        elif not np.isfinite(level_db[j]):
            active_db = level_db[j - 1]
        else:
            t = (excess_db[j - 1] - margin_db) / (excess_db[j - 1] - excess_db[j])
            active_db = level_db[j - 1] + t * (level_db[j] - level_db[j - 1])
    return float(active_db - 20 * np.log10(FULL_SCALE))


def to_level(x: npt.NDArray[np.floating], rate: int, target_dbov: float) -> npt.NDArray[np.int16]:
    gain = 10 ** ((target_dbov - active_speech_level(x, rate)) / 20)
    y = np.round(x * gain)
    if np.abs(y).max() > 32767:
        raise RuntimeError(f"clipping at {target_dbov} dBov: peak {np.abs(y).max():.0f}")
    return y.astype(np.int16)


def make_clip(spec: ClipSpec) -> dict[int, npt.NDArray[np.int16]]:
    """The clip of ``spec`` at every rate in ``OUTPUT_RATES``."""
    padded = trim_and_pad(synthesize(spec), ESPEAK_RATE)
    return {rate: to_level(resample(padded, ESPEAK_RATE, rate), rate, TARGET_DBOV) for rate in OUTPUT_RATES}


def main(out_dir: Path = CLIPS_DIR) -> None:
    version = subprocess.run(["espeak-ng", "--version"], check=True, capture_output=True, text=True).stdout.strip()
    print(version)
    out_dir.mkdir(parents=True, exist_ok=True)
    for spec in SPECS:
        for rate, samples in make_clip(spec).items():
            path = out_dir / wav_name(spec.role, rate)
            write_wav(path, rate, samples)
            print(
                f"{path.name}: {len(samples) / rate:.3f} s, "
                f"{active_speech_level(samples, rate):+.2f} dBov active, "
                f"peak {20 * np.log10(np.abs(samples).max() / FULL_SCALE):+.1f} dBFS"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else CLIPS_DIR)
