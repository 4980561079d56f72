"""E-model only decodes nothing: the playout schedule, its concealment and FEC recoveries, and so every
figure but PESQ's and the audio, are the same whether the audio is decoded or not."""

from __future__ import annotations

import numpy as np

from testbed.media.clips import load_clip
from testbed.media.encoded_clip import encoded_clip, opus_settings
from testbed.scoring.direction import SentPackets, TapArrivals, score_direction
from testbed.scoring.options import ScoringOptions
from testbed.scoring.playout import simulate_arrivals


def test_the_e_model_needs_no_decoding():
    payloads = encoded_clip("opus", "client", opus_settings([32000, True, 10]))  # with in-band FEC
    n = 300
    rng = np.random.default_rng(3)
    delays = 40 + rng.uniform(-15, 15, n)
    lost = rng.random(n) < 0.05
    received = simulate_arrivals(payloads, "opus", delays, lost)
    send = np.arange(n, dtype=np.int64) * 20_000_000
    seq = np.arange(n, dtype=np.int64)
    recv = send + np.round(delays * 1e6).astype(np.int64)
    args = ("opus", SentPackets(seq, send, seq * 960), TapArrivals(seq[~lost], recv[~lost]), received)
    clip = load_clip("client", 16000)
    decoded = score_direction(*args, clip, 16000, len(payloads), options=ScoringOptions(pesq=True))
    packets_only = score_direction(*args, clip, 16000, len(payloads), options=ScoringOptions(pesq=False))
    assert decoded.mos_pesq is not None and packets_only.mos_pesq is None
    assert len(decoded.audio) > 0 and (packets_only.audio is None or len(packets_only.audio) == 0)
    assert decoded.fec["recovered"] > 0 and packets_only.fec == decoded.fec
    for name in ("network", "ta_ms", "ppl_percent", "burst_ratio", "r", "mos_emodel", "per_second"):
        assert getattr(packets_only, name) == getattr(decoded, name), name
    shared = {k: v for k, v in decoded.playout.items() if k in packets_only.playout}
    assert packets_only.playout == shared
