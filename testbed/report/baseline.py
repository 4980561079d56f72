"""``--baseline RUN_DIR``: a run checked against a stored run of the same experiment, for CI regression of
router templates.

The two runs must be the same experiment (``testbed.scenario.fingerprint``: topology, links, calls,
traffic, timeline, variant names); the router templates may differ, because that is the change under
test. Per variant both have, per call and direction, per MOS metric: the median over each run's
repetitions. A direction regresses when its median fell by more than the tolerance *and* the two runs'
ranges over repetitions do not overlap (with one repetition a range is its value), so run-to-run noise
does not fail a build. The tolerance, unless given: twice the largest spread (max - min over
repetitions) the baseline measured for that metric over the variant's directions, at least
``MIN_TOLERANCE``; a baseline of one repetition measured none, and ``DEFAULT_TOLERANCE`` stands in.
Each comparison is one check in the one threshold model (``CheckResult``), so JUnit names the metric,
the call and the direction, and the message both values.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from testbed.errors import InputError
from testbed.results import RESULT_FILE, CheckResult, RunResult
from testbed.results.metrics import counted_metric, scored_metrics
from testbed.results.scores import CallScores
from testbed.scenario.fingerprint import experiment_fingerprint, experiment_sections
from testbed.scenario.load import LoadedScenario
from testbed.stats import median

BASELINE_METRICS = ("mos_emodel", "mos_pesq")
MIN_TOLERANCE = 0.1  # MOS: PESQ of the same clean call varies by a few hundredths run to run
DEFAULT_TOLERANCE = 0.3  # MOS; a baseline without repetitions has no spread to take one from

Repetitions = list[tuple[str, int, list[CallScores]]]  # (variant, repetition, calls) per variant run
Values = dict[tuple[str, str, str, str], list[float]]  # (variant, call, direction, metric) -> per repetition


def load_baseline(run_dir: Path, loaded: LoadedScenario) -> RunResult:
    """The stored run's result, refused (bad input) unless it is a run of the same experiment."""
    path = run_dir / RESULT_FILE if run_dir.is_dir() else run_dir
    baseline = RunResult.load(path)
    if baseline.scenario.experiment is None:
        raise InputError(f"{path}: a run without an experiment fingerprint (made before baselines); run it again")
    if baseline.scenario.experiment != experiment_fingerprint(loaded):
        ours = experiment_sections(loaded)
        differ = [name for name, digest in ours.items() if baseline.scenario.experiment_sections.get(name) != digest]
        raise InputError(
            f"{path}: a baseline of another experiment ({baseline.scenario.name}, {baseline.scenario.file}): "
            f"{', '.join(differ) or 'the fingerprint'} differ from {loaded.path}; only router templates may"
        )
    return baseline


def _values(runs: Repetitions) -> Values:
    values: Values = defaultdict(list)
    scored = scored_metrics([call for _, _, calls in runs for call in calls])
    for variant, _repetition, calls in runs:
        for call in calls:
            for label, direction in call.directions.items():
                for name in BASELINE_METRICS:
                    value = counted_metric(call, direction, name, scored)
                    if value is not None:
                        values[(variant, call.id, label, name)].append(value)
    return values


def _tolerance(values: Values, variant: str, name: str) -> float | None:
    """Twice the baseline's largest run-to-run spread of the metric in the variant (None: one repetition
    only). Per variant: a noisy fifo must not widen a clean ef-priority's tolerance."""
    spreads = [max(v) - min(v) for key, v in values.items() if key[0] == variant and key[3] == name and len(v) > 1]
    return max(MIN_TOLERANCE, 2 * max(spreads)) if spreads else None


def compare(
    current: Repetitions, baseline: RunResult, source: str, tolerance: float | None = None
) -> list[CheckResult]:
    """One check per variant, call, direction and MOS metric present in both runs."""
    ours = _values(current)
    theirs = _values([(v.variant, v.repetition, v.calls) for v in baseline.variants])
    checks = []
    for key, values in ours.items():
        stored = theirs.get(key)
        if not stored:
            continue
        variant, call, direction, name = key
        allowed = tolerance if tolerance is not None else _tolerance(theirs, variant, name)
        how = "given" if tolerance is not None else "2x the baseline's spread" if allowed else "default"
        allowed = DEFAULT_TOLERANCE if allowed is None else allowed
        now, then = median(values), median(stored)
        assert now is not None and then is not None
        apart = max(values) < min(stored)
        passed = not (then - now > allowed and apart)
        verdict = "ok" if passed else "regressed beyond the tolerance and the run-to-run range"
        checks.append(
            CheckResult(
                rule=f"{name} no worse than the baseline (tolerance {allowed:.2f}, {how})",
                variant=variant,
                call=call,
                direction=direction,
                value=now,
                passed=passed,
                message=f"{variant} / {call} / {direction}: {name} {now:.3g} (range {min(values):.3g}-"
                f"{max(values):.3g}, {len(values)} runs) vs baseline {then:.3g} (range {min(stored):.3g}-"
                f"{max(stored):.3g}, {len(stored)} runs, {source}): {verdict}",
            )
        )
    return checks
