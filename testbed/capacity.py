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
from typing import Any

from testbed.codecs import codec
from testbed.errors import InputError
from testbed.lab import forkserver
from testbed.rescore_pool import score_variants
from testbed.results import metric as metric_of
from testbed.results.run import VariantRunEntry
from testbed.runner import run_variant
from testbed.scenario.load import LoadedScenario
from testbed.scenario.model import Scenario
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
    call_bps: float | None = None  # one call direction on the wire (codec + RTP, SRTP tag, UDP, IPv4, Ethernet)
    link_bps: int | None = None  # the slowest shaped link end
    theoretical: int | None = None  # link_bps // call_bps: what the link holds with nothing else on it


# per packet beyond the codec's payload, as a shaper counts it: RTP 12 + SRTP tag 10 + UDP 8 + IPv4 20 +
# Ethernet 14 (testbed.media.traffic.rates counts cross traffic the same way)
CALL_OVERHEAD_BYTES = 12 + 10 + 8 + 20 + 14


def call_bandwidth(codec_name: str, opus: list[Any] | None = None) -> float:
    """One call direction's wire rate (bit/s): the encoded clip's mean payload plus the headers, 50 packets
    per second."""
    from testbed.media.encoded_clip import encoded_clip, opus_settings

    payloads = encoded_clip(codec_name, "client", opus_settings(opus))
    mean_payload = sum(len(p) for p in payloads) / len(payloads)
    return (mean_payload + CALL_OVERHEAD_BYTES) * 8 / codec(codec_name).frame_s


def slowest_link(scenario: Scenario) -> int | None:
    """The lowest rate any link end of the scenario is shaped to (None: nothing is shaped)."""
    rates = [end.rate for ends in scenario.links.values() for end in ends.values() if end.rate is not None]
    return min(rates, default=None)


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
    scores = score_variants([(out_dir, run.workload)], ScoringOptions(pesq=metric == "mos_pesq"))[0]
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
    max_calls: int = 1000,
    impairment_engine: str | None = None,
    backend: str | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> VariantCapacity:
    if not loaded.scenario.calls:
        raise InputError(f"{loaded.path}: capacity needs a call in 'calls' to multiply")
    result = VariantCapacity(variant, 0)
    scenario = loaded.variant(variant)
    first = scenario.calls[0]
    result.call_bps = round(call_bandwidth(first.codec, list(first.opus.key(0.0))))
    result.link_bps = slowest_link(scenario)
    if result.link_bps is not None:
        result.theoretical = int(result.link_bps // result.call_bps)
    tried: dict[int, Trial] = {}

    def trial(n: int) -> bool:
        if n not in tried:
            tried[n] = run_trial(
                loaded, variant, n, out_dir / variant / f"calls-{n}", metric, min_mos, impairment_engine, backend
            )
            result.trials.append(tried[n])
            t = tried[n]
            progress(
                f"{variant}: {n} call(s): {'pass' if t.passed else 'fail'} (worst {metric} "
                f"{'-' if t.worst_mos is None else f'{t.worst_mos:.2f}'}, {t.connected} connected)"
            )
        return tried[n].passed

    with forkserver.serving(backend or scenario.backend):  # one warm fork server for every trial
        return _bisect(result, trial, max_calls)


def _bisect(result: VariantCapacity, trial: Callable[[int], bool], max_calls: int) -> VariantCapacity:
    """Double the calls until a trial fails, then bisect between the last pass and that failure."""
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
