"""ViSQOL beside PESQ on the same playout audio: near its ceiling for a clean clip, lower with loss, and
nothing to score without speech."""

from __future__ import annotations

import numpy as np

from testbed.media.clips import load_clip
from testbed.media.encoded_clip import encoded_clip
from testbed.scoring.decode import decode_frames
from testbed.scoring.direction import SentPackets, TapArrivals, score_direction
from testbed.scoring.options import ScoringOptions
from testbed.scoring.playout import ReceivedPackets
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


def test_visqol_is_scored_only_when_asked():
    """It costs about 0.5 s of CPU per second of audio, so a run asks for it (``--visqol``)."""
    payloads = encoded_clip("pcmu", "client")
    n = len(payloads)
    seq = np.arange(n, dtype=np.int64)
    sent_ns = seq * 20_000_000
    ts = seq * 160
    arrival = sent_ns + 30_000_000
    received = ReceivedPackets(arrival, seq, ts, tuple(payloads))
    clip = load_clip("client", 8000)

    def scored(options: ScoringOptions) -> tuple[float | None, float | None]:
        score = score_direction(
            "pcmu", SentPackets(seq, sent_ns, ts), TapArrivals(seq, arrival), received, clip, 8000, n, options=options
        )
        return score.mos_pesq, score.mos_visqol

    assert scored(ScoringOptions())[1] is None and scored(ScoringOptions())[0] is not None
    pesq, visqol = scored(ScoringOptions(visqol=True))
    assert pesq is not None and visqol is not None and visqol > 3.5
