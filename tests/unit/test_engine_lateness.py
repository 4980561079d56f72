"""The engine's release lateness: percentiles from a histogram, the count of late releases."""

from __future__ import annotations

import pytest

from testbed.lab.engine.engine import EngineStats, Lateness


def test_no_releases_no_lateness():
    stats = EngineStats()
    Lateness().into(stats)
    assert (stats.late_p50_ms, stats.late_p99_ms, stats.late_max_ms, stats.late_over_1ms) == (0, 0, 0, 0)


def test_percentiles_max_and_late_count():
    lateness = Lateness()
    for _ in range(98):
        lateness.add(20_000)  # 20 us
    lateness.add(1_500_000)  # 1.5 ms
    lateness.add(40_000_000)  # 40 ms: a descheduled engine
    stats = EngineStats()
    lateness.into(stats)
    assert stats.late_p50_ms == pytest.approx(0.02, abs=0.01)
    assert 1.5 <= stats.late_p99_ms <= 1.51  # a bin's upper edge: 10 us resolution
    assert stats.late_max_ms == 40.0
    assert stats.late_over_1ms == 2


def test_early_and_huge_values_stay_in_range():
    lateness = Lateness()
    lateness.add(-5)
    lateness.add(5_000_000_000)  # 5 s: past the last bin
    assert lateness.count == 2 and lateness.bins.sum() == 2
    assert lateness.percentile_ms(100) == 5000.0
