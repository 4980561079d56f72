"""Your own speech as the reference: a WAV is usable or fails validation naming the file and the problem
(exit 2); usable ones are converted to 8 and 16 kHz mono."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from testbed.media.clips import load_clip
from testbed.scenario.speech import SpeechError, analyse, check, write_rates
from tests.helpers.cli import run_cli


def write(path, samples, rate, channels=1, width=2):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        data = np.asarray(samples)
        w.writeframes(data.astype("<i2").tobytes() if width == 2 else data.astype(np.uint8).tobytes())
    return path


def natural(rate=16000, gain=1.0):
    """The shipped client clip (levelled to -26 dBov) at ``rate``, scaled by ``gain``."""
    clip = load_clip("client", 16000).astype(np.float64) * gain
    if rate != 16000:
        clip = np.interp(np.arange(0, clip.size, 16000 / rate), np.arange(clip.size), clip)
    return np.clip(clip, -32768, 32767)


def test_the_shipped_clip_is_usable_speech(tmp_path):
    speech = check(write(tmp_path / "ok.wav", natural(), 16000))
    assert -28 < speech.level_dbov < -20 and speech.activity > 0.4 and speech.lead_s < 1.5


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: write(p, natural()[: 16000 * 2], 16000), "long; give 4-60 s"),
        (lambda p: write(p, np.zeros(16000 * 6), 16000), "silent"),
        (lambda p: write(p, natural(gain=0.01), 16000), "active speech level"),
        (lambda p: write(p, np.concatenate([np.zeros(16000 * 5), natural()]), 16000), "silence before the speech"),
        (lambda p: write(p, natural(), 6000), "6000 Hz"),
        (lambda p: write(p, np.full(16000 * 6, 128), 16000, width=1), "8-bit"),
        (lambda p: (p.write_text("not audio"), p)[1], "not a PCM WAV"),
    ],
)
def test_unusable_references_say_why(tmp_path, make, problem):
    path = make(tmp_path / "bad.wav")
    with pytest.raises(SpeechError, match=problem):
        check(path)


def test_a_reference_is_converted_to_the_testbeds_rates(tmp_path):
    stereo = np.repeat(natural(48000), 2)  # the same speech in both channels, 48 kHz
    speech = check(write(tmp_path / "mine.wav", stereo, 48000, channels=2))
    write_rates(speech, tmp_path / "run" / "1-mine")
    for rate in (8000, 16000):
        samples = load_clip(str(tmp_path / "run" / "1-mine"), rate)
        assert abs(samples.size / rate - speech.seconds) < 0.05
        assert abs(analyse(samples / 32768.0, rate).level_dbov - speech.level_dbov) < 1.0


def test_validate_names_the_file_and_the_problem(tmp_path):
    write(tmp_path / "short.wav", natural()[:8000], 16000)
    scenario = tmp_path / "mine.yaml"
    scenario.write_text("name: mine\ncalls:\n  - {name: rep, speech: {from: short.wav}}\n")
    result = run_cli("validate", str(scenario))
    assert result.returncode == 2
    assert "calls.0.speech.from" in result.stderr and "short.wav" in result.stderr and "long" in result.stderr
