"""A sweep's statistics, recomputed from per-call rows: the repetition is the replicate, not the call.

Per trial and metric: the metric of one repetition is the median over its call directions (a call
that failed to connect counts as MOS 1); the trial's figure is the median over repetitions, with an
order-statistics interval (``testbed.stats``: 95 % needs 6 repetitions; with fewer the interval says
the level it reaches, 3 repetitions 75 %). Also the 5th percentile
over every call direction of every repetition and the share below the MOS bar. Variants at one point
are compared paired by repetition (repetition k against repetition k, which ran in the same block of
the shuffled order): the median paired difference with the same interval and a Wilcoxon signed-rank
test; the difference holds when its interval excludes 0 at 95 % (fewer than 6 repetitions: it can
exclude 0 only at the level it reaches, and the result says so). Pure: rows in, typed records out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from testbed.results import RunResult
from testbed.results.distribution import DEFAULT_MOS_THRESHOLD
from testbed.results.metrics import counted_metric, scored_metrics
from testbed.results.sweep import VARIANT_AXIS, Comparison, MetricStats, TrialInfo, TrialStats
from testbed.stats import LEVEL, median, median_interval

SWEEP_METRICS = ("mos_emodel", "mos_pesq", "loss", "p95_delay", "jitter")
COMPARED_METRICS = ("mos_emodel", "mos_pesq")

Row = dict[str, Any]


def call_rows(trial: TrialInfo, result: RunResult) -> list[Row]:
    """One row per call direction of every repetition of a trial: the raw material every statistic is
    recomputed from (a merge concatenates the rows of all shards)."""
    rows = []
    scored = scored_metrics([call for run in result.variants for call in run.calls])
    for run in result.variants:
        bar = run.distribution.threshold if run.distribution else DEFAULT_MOS_THRESHOLD
        for call in run.calls:
            for label, direction in call.directions.items():
                row: Row = {
                    "trial": trial.trial,
                    "repetition": run.repetition,
                    "call": call.id,
                    "direction": label,
                    "outcome": call.outcome,
                    "host": result.environment.host,
                    "harness_flagged": bool(run.harness and run.harness.flagged),
                    "threshold": bar,
                }
                for name in SWEEP_METRICS:
                    row[name] = counted_metric(call, direction, name, scored)
                rows.append(row)
    return rows


def _metric_stats(name: str, rows: list[Row], repetitions: list[int]) -> MetricStats:
    per_repetition: list[float | None] = []
    for repetition in repetitions:
        values = [r[name] for r in rows if r["repetition"] == repetition and r[name] is not None]
        per_repetition.append(median(values))
    present = [v for v in per_repetition if v is not None]
    pooled = [r[name] for r in rows if r[name] is not None]
    return MetricStats(
        metric=name,
        repetitions=per_repetition,
        numbers=repetitions,
        median=median(present),
        interval=median_interval(present),
        p5=round(float(np.percentile(pooled, 5)), 4) if pooled else None,
        directions=len(pooled),
    )


def trial_stats(trial: TrialInfo, rows: list[Row], passed: bool | None = None) -> TrialStats:
    repetitions = sorted({r["repetition"] for r in rows})
    mos = [r["mos_emodel"] for r in rows if r["mos_emodel"] is not None]
    bar = float(rows[0]["threshold"]) if rows else DEFAULT_MOS_THRESHOLD
    flagged = {r["repetition"] for r in rows if r["harness_flagged"]}
    return TrialStats(
        trial=trial.trial,
        point=trial.point,
        variant=trial.variant,
        parameters=trial.parameters,
        repetitions=len(repetitions),
        metrics={name: _metric_stats(name, rows, repetitions) for name in SWEEP_METRICS},
        threshold=bar,
        below=round(float(np.mean(np.asarray(mos) < bar)), 4) if mos else None,
        harness_flagged=len(flagged),
        passed=passed,
        host=sorted({r["host"] for r in rows}),
    )


def _paired(a: MetricStats, b: MetricStats) -> list[float]:
    """Repetition k of one trial against repetition k of the other, for every k both have a value of."""
    theirs = {k: y for k, y in zip(b.numbers, b.repetitions, strict=True) if y is not None}
    return [
        round(x - theirs[k], 4) for k, x in zip(a.numbers, a.repetitions, strict=True) if x is not None and k in theirs
    ]


def _wilcoxon(differences: list[float]) -> float | None:
    from scipy import stats as scipy_stats  # on first use (half a second of import)

    if not differences or not any(differences):
        return None if not differences else 1.0
    return round(float(scipy_stats.wilcoxon(differences).pvalue), 4)


def compare(variant: TrialStats, over: TrialStats, name: str) -> Comparison:
    """``variant`` minus ``over`` at one point, repetition k against repetition k."""
    a, b = variant.metrics[name], over.metrics[name]
    differences = _paired(a, b)
    interval = median_interval(differences)
    excludes_zero = interval is not None and (interval.low > 0 or interval.high < 0)
    return Comparison(
        point=variant.point,
        parameters={k: v for k, v in variant.parameters.items() if k != VARIANT_AXIS},
        variant=variant.variant,
        over=over.variant,
        metric=name,
        differences=differences,
        median=median(differences),
        interval=interval,
        wilcoxon_p=_wilcoxon(differences),
        excludes_zero=excludes_zero,
        holds=excludes_zero and interval is not None and interval.level >= LEVEL,
        disjoint=a.interval is not None
        and b.interval is not None
        and (a.interval.low > b.interval.high or a.interval.high < b.interval.low),
    )


def sweep_statistics(
    trials: Iterable[TrialInfo], rows: Iterable[Row], verdicts: dict[str, bool | None] | None = None
) -> tuple[list[TrialStats], list[Comparison]]:
    """Every trial with rows, in plan order; every variant compared with the point's first variant."""
    by_trial: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_trial[row["trial"]].append(row)
    ordered = sorted(trials, key=lambda t: t.index)
    stats = [trial_stats(t, by_trial[t.trial], (verdicts or {}).get(t.trial)) for t in ordered if by_trial[t.trial]]
    comparisons = []
    by_point: dict[str, list[TrialStats]] = defaultdict(list)
    for trial in stats:
        by_point[trial.point].append(trial)
    for point_trials in by_point.values():
        reference, *others = point_trials
        for other in others:
            comparisons += [compare(other, reference, name) for name in COMPARED_METRICS]
    return stats, comparisons
