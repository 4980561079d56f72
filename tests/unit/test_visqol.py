"""ViSQOL beside PESQ on the same playout audio: near its ceiling for a clean clip, lower with loss, and
nothing to score without speech."""

from __future__ import annotations

import numpy as np

from testbed.media.clips import load_clip
from testbed.media.encoded_clip import encoded_clip
from testbed.scoring.decode import decode_frames
from testbed.scoring.visqol import visqol_score


def test_visqol_ranks_clean_above_lossy_and_says_nothing_for_silence():
    clip = load_clip("client", 16000)
    payloads = encoded_clip("opus", "client")
    clean = decode_frames("opus", payloads, 16000)
    rng = np.random.default_rng(5)
    lossy = decode_frames("opus", [None if rng.random() < 0.3 else p for p in payloads], 16000, "silence")
    clean_score = visqol_score(clean, 16000, clip, 16000, len(payloads))
    lossy_score = visqol_score(lossy, 16000, clip, 16000, len(payloads))
    assert clean_score is not None and clean_score > 4.5
    assert lossy_score is not None and lossy_score < clean_score - 0.5
    assert visqol_score(np.zeros(16000 * 5, np.int16), 16000, clip, 16000, len(payloads)) is None


def test_narrow_band_audio_is_scored_at_16_khz():
    clip = load_clip("client", 8000)
    payloads = encoded_clip("pcmu", "client")
    audio = decode_frames("pcmu", payloads)
    score = visqol_score(audio, 8000, clip, 8000, len(payloads))
    assert score is not None and score > 3.5
