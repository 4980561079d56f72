"""Network statistics against patterns whose answers are known analytically."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.scoring.netstats import burst_ratio, loss_runs, network_stats, rfc3550_jitter

MS = 1_000_000
T0 = 1_700_000_000 * 10**9


def stream(delays_ms, lost=None, interval_ms=20.0):
    """Per-sent-packet arrays for 20 ms packets with the given one-way delays and losses."""
    delays = np.asarray(delays_ms, dtype=np.float64)
    n = delays.size
    seq = np.arange(n, dtype=np.int64) + 1000
    send = T0 + (np.arange(n) * interval_ms * MS).astype(np.int64)
    recv = send + (delays * MS).astype(np.int64)
    if lost is not None:
        recv[np.asarray(lost, dtype=bool)] = -1
    return seq, send, recv


def gilbert(n, p, q, rng):
    """Two-state Markov loss: good->bad with p, bad->good with q; every packet in the bad state is lost."""
    lost = np.zeros(n, dtype=bool)
    bad = False
    u = rng.random(n)
    for i in range(n):
        bad = (u[i] >= q) if bad else (u[i] < p)
        lost[i] = bad
    return lost


def test_constant_delay_has_zero_jitter_and_exact_delay():
    stats = network_stats(*stream(np.full(500, 42.0)))
    assert stats.jitter.final_ms == 0.0 and stats.jitter.max_ms == 0.0
    assert stats.delay.min_ms == stats.delay.max_ms == stats.delay.p99_ms == pytest.approx(42.0)
    assert stats.loss.lost == 0 and stats.loss.burst_ratio == 1.0
    assert stats.reordered == 0 and stats.duplicates == 0


def test_alternating_delay_gives_the_analytic_rfc3550_value():
    # |D| = a on every step, so J_n = a * (1 - (15/16)^n) after n steps (J_0 = 0), tending to a.
    a, n = 10.0, 300
    delays = np.where(np.arange(n) % 2 == 0, 30.0, 30.0 + a)
    stats = network_stats(*stream(delays))
    assert stats.jitter.final_ms == pytest.approx(a * (1 - (15 / 16) ** (n - 1)), rel=1e-9)
    short = network_stats(*stream(delays[:5]))
    assert short.jitter.final_ms == pytest.approx(a * (1 - (15 / 16) ** 4), rel=1e-9)
    assert stats.delay.p50_ms == pytest.approx(30 + a / 2)


def test_jitter_from_rtp_timestamps_survives_a_timestamp_wrap():
    n = 200
    seq, send, recv = stream(np.full(n, 25.0))
    rtp = ((2**32 - 960 * 50) + np.arange(n) * 960) % 2**32  # wraps after 50 packets
    stats = network_stats(seq, send, recv, rtp_ts=rtp, clock_rate=48000)
    assert stats.jitter.max_ms == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="clock_rate"):
        network_stats(seq, send, recv, rtp_ts=rtp)


def test_rfc3550_jitter_running_estimate():
    j = rfc3550_jitter([0, 36, 40], [0, 20, 40])  # transits 0, 16, 0
    assert j.tolist() == pytest.approx([0.0, 1.0, 1.0 + (16 - 1) / 16])


def test_known_loss_pattern_gives_runs_and_burst_ratio():
    lost = np.array([0, 1, 1, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
    assert loss_runs(lost).tolist() == [2, 1]
    assert burst_ratio(lost) == pytest.approx(1.5 * (1 - 0.3))  # mean burst / (1 / (1 - p))
    stats = network_stats(*stream(np.full(10, 20.0), lost))
    assert (stats.loss.lost, stats.loss.runs, stats.loss.max_burst) == (3, 2, 2)
    assert stats.loss.fraction == pytest.approx(0.3)
    assert burst_ratio(np.zeros(5, dtype=bool)) == 1.0
    assert burst_ratio(np.ones(5, dtype=bool)) is None


def test_random_loss_has_burst_ratio_near_one():
    rng = np.random.default_rng(7)
    lost = rng.random(100_000) < 0.05
    assert burst_ratio(lost) == pytest.approx(1.0, abs=0.03)


def test_bursty_loss_has_burst_ratio_above_one():
    # Gilbert model: BurstR = 1 / (p + q) (G.113 Appendix I), here 1 / 0.27 = 3.7
    rng = np.random.default_rng(8)
    lost = gilbert(200_000, p=0.02, q=0.25, rng=rng)
    assert burst_ratio(lost) == pytest.approx(1 / 0.27, rel=0.08)
    assert network_stats(*stream(np.full(lost.size, 20.0), lost)).loss.burst_ratio > 3


def test_reordering_and_duplicates():
    seq, send, recv = stream(np.full(10, 20.0))
    recv[4] += 50 * MS  # packet 4 arrives after 5, 6 and 7
    stats = network_stats(seq, send, recv)
    assert stats.reordered == 1 and stats.duplicates == 0
    arrivals = seq[np.argsort(recv)]
    with_copies = np.concatenate([arrivals, arrivals[[2, 2, 9]]])
    stats = network_stats(seq, send, recv, arrival_seq=with_copies)
    assert stats.duplicates == 3 and stats.reordered == 1


def test_repeated_rows_count_once():
    seq, send, recv = stream(np.full(5, 20.0), lost=[0, 0, 1, 0, 0])
    seq2, send2, recv2 = np.append(seq, seq[1]), np.append(send, send[1]), np.append(recv, -1)
    stats = network_stats(seq2, send2, recv2)
    assert (stats.loss.sent, stats.loss.lost) == (5, 1)


def test_per_second_series_bins_by_send_time():
    n = 150  # 3 s of 20 ms packets
    lost = np.zeros(n, dtype=bool)
    lost[60:65] = True  # second 1 only
    delays = np.full(n, 20.0)
    delays[100:] = 80.0  # second 2 is slower
    series = network_stats(*stream(delays, lost)).per_second
    assert series.start_s == [0.0, 1.0, 2.0]
    assert series.sent == [50, 50, 50]
    assert series.lost == [0, 5, 0]
    assert series.loss_fraction == pytest.approx([0, 0.1, 0])
    assert series.mean_delay_ms == pytest.approx([20, 20, 80])
    assert series.jitter_ms[0] == 0 and series.jitter_ms[2] > 0


def test_as_dict_is_json_even_when_nothing_arrived():
    stats = network_stats(*stream(np.full(20, 20.0), np.ones(20, dtype=bool)))
    data = json.loads(json.dumps(stats.as_dict(), allow_nan=False))
    assert data["loss"]["fraction"] == 1.0 and data["delay"]["p50_ms"] is None
    assert data["loss"]["burst_ratio"] is None
    full = json.loads(json.dumps(network_stats(*stream(np.full(100, 20.0))).as_dict(), allow_nan=False))
    assert set(full) == {"loss", "delay", "jitter", "reordered", "duplicates", "per_second", "in_flight", "loss_bins"}


def test_mismatched_arrays_are_refused():
    with pytest.raises(ValueError, match="one entry per sent packet"):
        network_stats([1, 2], [0, 1], [0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=300))
def test_loss_counts_are_consistent(mask):
    lost = np.array(mask)
    stats = network_stats(*stream(np.full(lost.size, 20.0), lost)).loss
    assert stats.lost == lost.sum() == loss_runs(lost).sum()
    assert stats.sent == stats.received + stats.lost
    if 0 < stats.lost < stats.sent:
        assert stats.burst_ratio == pytest.approx(stats.mean_burst * (1 - stats.fraction))
