"""``result.json``: the whole run as one typed model, built from the run directory's files."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.report.thresholds import mos_threshold
from testbed.results import RESULT_FILE, CheckResult, LabDescription, RunInfo, RunResult, VariantScores, WorkloadRecord
from testbed.results.run import (
    Environment,
    HarnessLateness,
    Host,
    Queues,
    ScenarioInfo,
    TrafficSummary,
    VariantResult,
    Verdict,
)
from testbed.results.scores import mos_distribution
from testbed.results.workload import TrafficRecord
from testbed.scenario.load import LoadedScenario


@dataclass(frozen=True)
class ScoredVariant:
    """One variant run's files, read back and scored."""

    name: str
    variant: str
    repetition: int
    workload: WorkloadRecord
    lab: LabDescription
    scores: VariantScores


def traffic_summary(record: TrafficRecord) -> TrafficSummary:
    """A traffic flow's achieved throughput (from the sink's final report) and its per-second series."""
    done: dict[str, Any] = next((r for r in reversed(record.sink_reports) if r.get("event") == "done"), {})
    intervals = [r for r in record.sink_reports if r.get("event") == "interval"]
    return TrafficSummary.model_validate(
        {
            "name": record.name,
            "kind": record.kind,
            "from": record.source,
            "to": record.sink,
            "started_at": record.started_at,
            "stopped_at": record.stopped_at,
            "bps": done.get("bps"),
            "wire_bps": done.get("wire_bps"),
            "error": record.error,
            "per_second": [{"t": r.get("t"), "bps": r.get("bps")} for r in intervals],
        }
    )


# Flag limits. An engine whose *median* release is late shifts every delay it imposes (a 20 ms link that
# measures 22 ms); a tail beyond a few ms is jitter the network did not cause. A sender's pacing does
# not enter one-way delay (measured from each packet's own send time), only its spacing: asyncio's
# timers alone are about 1 ms late at the median, so only a tail beyond a few ms is flagged.
ENGINE_MEDIAN_MS = 0.5
TAIL_MS = 5.0
# The light endpoint's sender is held to 1 ms: at hundreds of calls a late batch is many packets late at
# once, which the receivers' jitter and the playout would charge to the network.
LIGHT_TAIL_MS = 1.0
LIGHT_KINDS = ("rtp",)


def harness_lateness(v: ScoredVariant) -> HarnessLateness:
    """The engines' release lateness (lab.json) and the senders' pacing (workload.json), worst of each."""
    engines = list(v.lab.impairment_engine.stats.values())

    def worst(key: str) -> float | None:
        return max((e[key] for e in engines if e.get(key) is not None), default=None)

    engine_p50, engine_p99 = worst("late_p50_ms"), worst("late_p99_ms")
    over = sum(int(e.get("late_over_1ms") or 0) for e in engines)
    legs = [leg for call in v.workload.calls for leg in call.sides.values() if leg.pacing]
    pacing_p99 = max((leg.pacing["p99_ms"] for leg in legs), default=None)
    # light senders are judged per node (all its streams' packets), the others per call side
    webrtc_p99 = max((leg.pacing["p99_ms"] for leg in legs if leg.endpoint not in LIGHT_KINDS), default=None)
    light = (
        s["pacing"]["p99_ms"] for s in v.workload.endpoints.values() if s.get("kind") in LIGHT_KINDS and s.get("pacing")
    )
    light_p99 = max(light, default=None)
    limits = [
        ("impairment engine median", engine_p50, ENGINE_MEDIAN_MS),
        ("impairment engine p99", engine_p99, TAIL_MS),
        ("call senders p99", webrtc_p99, TAIL_MS),
        ("light senders p99", light_p99, LIGHT_TAIL_MS),
    ]
    behind = [f"{who} {value:.2f} ms" for who, value, limit in limits if value is not None and value > limit]
    tap_drops = sum(int(stats.get("dropped") or 0) for stats in v.workload.tap_stats.values())
    if tap_drops:
        behind.append(
            f"taps dropped {tap_drops} packets (the kernel's counter): those packets are missing from the records"
        )
    note = f"the host fell behind ({', '.join(behind)}): figures include harness lateness" if behind else ""
    return HarnessLateness(
        engine_late_p50_ms=engine_p50,
        engine_late_p99_ms=engine_p99,
        engine_late_over_1ms=over,
        pacing_p99_ms=pacing_p99,
        light_pacing_p99_ms=light_p99,
        tap_dropped=tap_drops,
        flagged=bool(behind),
        note=note,
    )


def _variant(loaded: LoadedScenario, v: ScoredVariant) -> VariantResult:
    spec = loaded.scenario.variants.get(v.variant)
    threshold, source = mos_threshold(loaded.scenario.thresholds, v.variant)
    return VariantResult(
        name=v.name,
        variant=v.variant,
        repetition=v.repetition,
        description=spec.description if spec is not None else "",
        router_template=v.lab.router.template if v.lab.router else None,
        t0=v.workload.t0,
        duration_s=v.workload.duration,
        calls=v.scores.calls,
        traffic=[traffic_summary(t) for t in v.workload.traffic],
        timeline=v.workload.timeline,
        queues=Queues(classes=v.workload.queue_classes, samples=v.workload.queues),
        impairment_engine=v.lab.impairment_engine,
        agents=v.workload.agents,
        harness=harness_lateness(v),
        fault=v.workload.fault,
        distribution=mos_distribution(v.scores.calls, threshold, source),
    )


def browser_versions(variants: list[ScoredVariant]) -> dict[str, str]:
    """``{"chromium": "Chromium 156..."}``: every browser version the calls' browser sides ran."""
    versions = sorted(
        {
            leg.browser["version"]
            for v in variants
            for call in v.workload.calls
            for leg in call.sides.values()
            if leg.browser.get("version")
        }
    )
    return {"chromium": "; ".join(versions)} if versions else {}


def fault_checks(variants: list[ScoredVariant]) -> list[CheckResult]:
    """A failed check for each variant run whose workload stopped at a fault: its figures are partial."""
    return [
        CheckResult(
            rule="run completed",
            variant=v.variant,
            call="all calls",
            direction="all directions",
            value=None,
            passed=False,
            message=f"{v.name}: the run stopped at a fault of the testbed, its figures are partial: {v.workload.fault}",
        )
        for v in variants
        if v.workload.fault is not None
    ]


def build(loaded: LoadedScenario, run: RunInfo, variants: list[ScoredVariant], checks: list[CheckResult]) -> RunResult:
    """The run's machine comes from run.json (where the calls ran); the scoring machine is this one."""
    failed = [c for c in checks if not c.passed]
    here = Host(host=platform.node(), kernel=platform.release(), python=platform.python_version())
    return RunResult(
        scenario=ScenarioInfo(
            name=loaded.scenario.name,
            description=loaded.scenario.description,
            file=str(loaded.path),
            experiment=run.experiment,
            experiment_sections=run.experiment_sections,
        ),
        environment=Environment(
            host=run.host,
            kernel=run.kernel,
            python=run.python,
            backend=sorted({v.lab.backend for v in variants}),
            impairment_engine=sorted({v.lab.engine_name() for v in variants}),
            started=run.started,
            scored_on=here,
            parallel=run.parallel,
            software={**run.software, **browser_versions(variants)},
        ),
        variants=[_variant(loaded, v) for v in variants],
        thresholds=checks,
        verdict=Verdict(
            passed=not failed,
            checks=len(checks),
            failed=len(failed),
            first_failure=failed[0].message if failed else None,
        ),
    )


def save(result: RunResult, run_dir: Path) -> Path:
    return result.save(run_dir / RESULT_FILE)
