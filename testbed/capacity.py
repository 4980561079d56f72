"""``testbed capacity``: the largest number of concurrent calls a scenario's network carries at a MOS.

For each variant, the scenario's first call is multiplied (``count: N``) and run with everything else
the scenario has (cross traffic, impairments, router template). A trial passes when every call
connected and every direction scores at least the target. The search doubles N until a trial fails,
then bisects between the last pass and the first failure, so about 2 log2(N) trials per variant.
This is the vendors' "sessions >= number of reps" check, measured instead of estimated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from testbed.errors import InputError
from testbed.rescore import score_variant
from testbed.results import metric as metric_of
from testbed.results.run import VariantRunEntry
from testbed.runner import run_variant
from testbed.scenario.load import LoadedScenario
from testbed.scoring.options import ScoringOptions


@dataclass
class Trial:
    calls: int
    passed: bool
    worst_mos: float | None
    connected: int


@dataclass
class VariantCapacity:
    variant: str
    calls: int  # the largest passing count (0: not even one call)
    trials: list[Trial] = field(default_factory=list)
    capped: bool = False  # passed at the search's upper limit


def run_trial(
    loaded: LoadedScenario,
    variant: str,
    calls: int,
    out_dir: Path,
    metric: str,
    min_mos: float,
    impairment_engine: str | None,
    backend: str | None = None,
) -> Trial:
    """The variant with its first call multiplied to ``calls``, run and scored like any variant run."""
    scenario = loaded.variant(variant)
    first = scenario.calls[0].model_copy(update={"count": calls})
    scenario = scenario.model_copy(update={"calls": [first]})
    run = run_variant(
        loaded,
        VariantRunEntry(name=f"calls-{calls}", variant=variant),
        out_dir,
        scenario=scenario,
        backend=backend,
        impairment_engine=impairment_engine,
        purpose=f"capacity {loaded.path} {variant} x{calls}",
    )
    scores = score_variant(out_dir, run.workload, ScoringOptions(pesq=metric == "mos_pesq"))
    values = [metric_of(call, direction, metric) for call in scores.calls for direction in call.directions.values()]
    connected = sum(call.outcome == "connected" for call in scores.calls)
    worst = None if not values or any(v is None for v in values) else min(v for v in values if v is not None)
    passed = connected == calls and worst is not None and worst >= min_mos
    return Trial(calls, passed, worst, connected)


def search(
    loaded: LoadedScenario,
    variant: str,
    out_dir: Path,
    *,
    min_mos: float,
    metric: str = "mos_emodel",
    max_calls: int = 64,
    impairment_engine: str | None = None,
    backend: str | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> VariantCapacity:
    if not loaded.scenario.calls:
        raise InputError(f"{loaded.path}: capacity needs a call in 'calls' to multiply")
    result = VariantCapacity(variant, 0)
    tried: dict[int, Trial] = {}

    def trial(n: int) -> bool:
        if n not in tried:
            tried[n] = run_trial(
                loaded, variant, n, out_dir / variant / f"calls-{n}", metric, min_mos, impairment_engine
            )
            result.trials.append(tried[n])
            t = tried[n]
            progress(
                f"{variant}: {n} call(s): {'pass' if t.passed else 'fail'} (worst {metric} "
                f"{'-' if t.worst_mos is None else f'{t.worst_mos:.2f}'}, {t.connected} connected)"
            )
        return tried[n].passed

    good, bad = 0, None
    n = 1
    while n <= max_calls:
        if trial(n):
            good = n
            n *= 2
        else:
            bad = n
            break
    if bad is None:
        if good < max_calls and trial(max_calls):
            good = max_calls
        result.calls, result.capped = good, good == max_calls
        return result
    while bad - good > 1:
        middle = (good + bad) // 2
        if trial(middle):
            good = middle
        else:
            bad = middle
    result.calls = good
    return result
