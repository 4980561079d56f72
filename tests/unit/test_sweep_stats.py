"""Sweep statistics and baseline comparisons, pure: the order-statistics interval against the binomial
coverage counted by hand, the repetition as the replicate, paired comparisons, and a baseline's
tolerance from its run-to-run spread."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from testbed.report.baseline import DEFAULT_TOLERANCE, compare
from testbed.results import CallScores, DirectionScores
from testbed.results.sweep import TrialInfo
from testbed.stats import median_interval
from testbed.sweep.stats import call_rows, sweep_statistics
from tests.helpers.results import one_call, run_result


def _coverage(j: int, n: int) -> float:
    """P(x_(j) <= median < x_(n+1-j)) for continuous values: 1 - 2 P(Binomial(n, 1/2) < j), counted."""
    return 1 - 2 * sum(comb(n, k) for k in range(j)) / 2**n


@pytest.mark.parametrize("n", range(2, 21))
def test_the_interval_is_the_widest_rank_reaching_95_percent_or_the_range(n):
    values = list(np.random.default_rng(n).normal(4.0, 0.2, n))
    interval = median_interval(values)
    assert interval is not None
    j = max([j for j in range(1, n // 2 + 1) if _coverage(j, n) >= 0.95], default=1)
    ordered = sorted(values)
    assert interval.low == pytest.approx(ordered[j - 1], abs=1e-4) and interval.high == pytest.approx(
        ordered[n - j], abs=1e-4
    )
    assert interval.level == pytest.approx(_coverage(j, n), abs=1e-4)
    assert (interval.level >= 0.95) == (n >= 6)
    assert median_interval(values[:1]) is None


def _info(trial: str, variant: str, index: int) -> TrialInfo:
    return TrialInfo(
        trial=trial,
        index=index,
        point="p1",
        variant=variant,
        parameters={"links.wan.router.rate": "2mbit", "variant": variant},
        repetitions=6,
        plan_fingerprint="x",
    )


def _rows(trial: str, per_repetition: list[list[float]]) -> list[dict]:
    rows = []
    for repetition, values in enumerate(per_repetition, start=1):
        for number, mos in enumerate(values):
            rows.append(
                {
                    "trial": trial,
                    "repetition": repetition,
                    "call": f"c-{number}",
                    "direction": "a->b",
                    "outcome": "connected",
                    "host": "h",
                    "harness_flagged": repetition == 2 and trial == "p1-fifo",
                    "threshold": 3.6,
                    "mos_emodel": mos,
                    "mos_pesq": None,
                    "loss": 0.0,
                    "p95_delay": 10.0,
                    "jitter": 1.0,
                }
            )
    return rows


def test_the_repetition_is_the_replicate_and_pairs_compare_repetition_by_repetition():
    fifo = [[1.0, 3.0, 4.0], [1.2, 1.2, 4.1], [2.0, 2.5, 4.0], [1.0, 1.1, 1.2], [3.0, 3.1, 3.2], [2.2, 2.0, 4.0]]
    ef = [[4.4, 4.4, 4.3], [4.4, 4.2, 4.4], [4.3, 4.4, 4.4], [4.4, 4.4, 4.4], [4.4, 4.3, 4.4], [4.4, 4.4, 4.1]]
    trials, comparisons = sweep_statistics(
        [_info("p1-ef", "ef", 1), _info("p1-fifo", "fifo", 0)], _rows("p1-fifo", fifo) + _rows("p1-ef", ef)
    )
    by = {t.trial: t for t in trials}
    assert [t.trial for t in trials] == ["p1-fifo", "p1-ef"]  # plan order
    mos = by["p1-fifo"].metrics["mos_emodel"]
    assert mos.repetitions == [3.0, 1.2, 2.5, 1.1, 3.1, 2.2]  # each repetition's median over its directions
    assert mos.median == pytest.approx(np.median(mos.repetitions)) and mos.interval.level == pytest.approx(0.9688, 1e-3)
    assert mos.p5 == pytest.approx(np.percentile(sum(fifo, []), 5), abs=1e-4) and mos.directions == 18
    assert by["p1-fifo"].below == pytest.approx(np.mean(np.array(sum(fifo, [])) < 3.6), abs=1e-4)
    assert by["p1-fifo"].harness_flagged == 1 and by["p1-ef"].metrics["mos_pesq"].median is None
    gain = next(c for c in comparisons if c.metric == "mos_emodel")
    assert (gain.variant, gain.over) == ("ef", "fifo") and len(gain.differences) == 6
    assert gain.holds and gain.disjoint and gain.wilcoxon_p == pytest.approx(0.03125, abs=1e-4)  # 6 of 6 positive: 2/64
    same = sweep_statistics(
        [_info("p1-a", "a", 0), _info("p1-b", "b", 1)], _rows("p1-a", fifo) + _rows("p1-b", fifo[1:] + fifo[:1])
    )[1][0]
    assert not same.holds  # the same values in another order: the paired differences straddle 0


def test_a_baseline_fails_a_drop_beyond_twice_its_spread_and_its_range():
    stored = run_result([4.40, 4.30])  # spread 0.1: tolerance 0.2
    ok = compare([("ef", 1, [one_call(4.25)])], stored, "b")
    assert all(c.passed for c in ok) and "tolerance 0.20, 2x the baseline's spread" in ok[0].rule
    bad = compare([("ef", 1, [one_call(4.05)])], stored, "b")
    assert len(bad) == 2 and not any(c.passed for c in bad)
    assert bad[0].call == "call" and "mos_emodel 4.05" in bad[0].message and "vs baseline 4.35" in bad[0].message
    overlapping = compare([("ef", 1, [one_call(4.05)]), ("ef", 2, [one_call(4.35)])], stored, "b")
    assert all(c.passed for c in overlapping)  # the medians differ by 0.15 and the ranges overlap
    single = compare([("ef", 1, [one_call(4.2)])], run_result([4.4]), "b")  # no spread measured: the default
    assert all(c.passed for c in single) and f"tolerance {DEFAULT_TOLERANCE:.2f}, default" in single[0].rule
    assert not compare([("ef", 1, [one_call(4.2)])], run_result([4.4]), "b", tolerance=0.1)[0].passed
    assert compare([("other", 1, [one_call(1.0)])], stored, "b") == []  # a variant the baseline lacks


def test_pairs_are_keyed_by_repetition_number_not_position():
    a = _rows("p1-a", [[4.0], [4.1], [4.2]])
    b = [row for row in _rows("p1-b", [[4.0], [9.9], [4.3]]) if row["repetition"] != 2]  # b's 2nd never finished
    comparison = sweep_statistics([_info("p1-a", "a", 0), _info("p1-b", "b", 1)], a + b)[1][0]
    assert comparison.differences == [0.0, pytest.approx(0.1)]  # b - a: 1 with 1, 3 with 3 (not 3 with 2)


def test_a_noisy_variant_does_not_widen_another_variants_tolerance():
    stored = run_result([4.40, 4.38])
    noisy = run_result([1.0, 2.5])
    for run in noisy.variants:
        run.variant = "fifo"
    stored.variants += noisy.variants
    checks = {c.variant: c for c in compare([("ef", 1, [one_call(4.0)]), ("fifo", 1, [one_call(2.0)])], stored, "b")}
    assert not checks["ef"].passed and "tolerance 0.10" in checks["ef"].rule  # 2 x 0.02, at least 0.1
    assert checks["fifo"].passed and "tolerance 3.00" in checks["fifo"].rule


def test_a_failed_call_counts_as_mos_1_only_where_the_run_scored_that_mos():
    failed = CallScores(
        id="f",
        name="f",
        outcome="failed",
        reason="not connected",
        setup_s=None,
        codec="opus",
        dscp=46,
        directions={"a->b": DirectionScores(codec="opus", wideband=True)},
    )
    unscored = one_call(4.3).model_copy(
        update={"directions": {"a->b": DirectionScores(codec="opus", wideband=True, mos_emodel=4.3)}}
    )  # --no-pesq: E-model only
    result = run_result([4.4])
    result.variants[0].calls = [unscored, failed]
    rows = call_rows(_info("p1-ef", "ef", 0), result)
    by_call = {row["call"]: row for row in rows}
    assert by_call["f"]["mos_emodel"] == 1.0 and by_call["f"]["mos_pesq"] is None
    alone = run_result([4.4, 4.3])  # PESQ scored in repetition 1; repetition 2's only call failed
    alone.variants[1].calls = [failed]
    rows = [row for row in call_rows(_info("p1-ef", "ef", 0), alone) if row["repetition"] == 2]
    assert rows[0]["mos_emodel"] == 1.0 and rows[0]["mos_pesq"] == 1.0
