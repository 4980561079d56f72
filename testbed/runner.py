"""One run of a scenario: for each variant, build the lab, drive the workload, take the lab down; then
score the run directory, check the thresholds and write the reports.

Everything a variant produces lands in ``<out>/<variant>/`` (``workload.json``, ``lab.json``, per-call
packet files, taps' records and pcaps); scoring and the reports read only those files, so a stored run
can be scored again elsewhere (``testbed score``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import multiprocessing
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.errors import LabError
from testbed.lab import forkserver
from testbed.report import baseline as baseline_report
from testbed.report import html
from testbed.report import junit as junit_report
from testbed.report import result as result_file
from testbed.report.thresholds import evaluate
from testbed.rescore_pool import score_variants
from testbed.results import (
    LAB_FILE,
    RUN_FILE,
    WORKLOAD_FILE,
    LabDescription,
    RunInfo,
    RunResult,
    WorkloadRecord,
)
from testbed.results.live import Monitor
from testbed.results.run import VariantRunEntry
from testbed.results.scores import CallScores
from testbed.scenario.fingerprint import experiment_fingerprint, experiment_sections
from testbed.scenario.load import LoadedScenario
from testbed.scenario.model import Scenario
from testbed.scoring.options import DEFAULT_SCORING, ScoringOptions
from testbed.workload import scenario_clips

RESULTS = Path("results")
Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


def default_out_dir(scenario_name: str, root: Path = RESULTS) -> Path:
    """``results/<YYYYmmdd-HHMMSS>-<scenario>``: sorts by time, says what ran."""
    return root / f"{time.strftime('%Y%m%d-%H%M%S')}-{scenario_name}"


@dataclass
class VariantRun:
    """One variant's lab and workload, finished; its files are in ``out_dir``."""

    name: str  # the directory: the variant, with "-rN" for repetition N > 1 of --repeat
    variant: str
    repetition: int
    out_dir: Path
    workload: WorkloadRecord
    lab: LabDescription


@dataclass(frozen=True)
class Baseline:
    """A stored run to compare with (``report.baseline.load_baseline`` checked it is the same experiment)."""

    path: Path
    result: RunResult
    tolerance: float | None = None  # MOS; None: from the baseline's run-to-run spread


@dataclass
class Run:
    scenario: str
    out_dir: Path
    variants: list[VariantRun] = field(default_factory=list)


def run_entry(variant: str, repetition: int) -> VariantRunEntry:
    """One variant run: its directory is the variant's name, with "-rN" for repetition N > 1."""
    name = variant if repetition == 1 else f"{variant}-r{repetition}"
    return VariantRunEntry(name=name, variant=variant, repetition=repetition)


def run_names(variants: list[str], repeat: int) -> list[VariantRunEntry]:
    """The variant runs in the order they run: each repetition runs every variant."""
    return [run_entry(variant, repetition) for repetition in range(1, repeat + 1) for variant in variants]


def run_variant(
    loaded: LoadedScenario,
    entry: VariantRunEntry,
    out_dir: Path,
    *,
    scenario: Scenario | None = None,
    backend: str | None = None,
    impairment_engine: str | None = None,
    purpose: str | None = None,
    progress: Progress = _quiet,
    monitor: Monitor | None = None,
) -> VariantRun:
    """Build the variant's lab, run its workload, take the lab down, write workload.json and lab.json.
    ``scenario`` replaces the variant's scenario (capacity multiplies its first call)."""
    scenario = scenario or loaded.variant(entry.variant)
    name = entry.name
    progress(f"variant {name}: building the lab")
    server = forkserver.current()
    if server is not None and (backend or scenario.backend) == "netns":
        server.preload_clips(scenario_clips(scenario))  # encoded beside the lab's imports and build
    from testbed.lab import Lab  # imported here, after the preload (the first variant waits for these)
    from testbed.lab.engine_set import EngineFailed
    from testbed.workload import Workload

    workload: WorkloadRecord | None = None
    lab = Lab(
        scenario,
        backend=backend,
        purpose=purpose or f"run {loaded.path} {name}",
        shared_dirs=[out_dir],
        log_dir=out_dir,
        router_template=loaded.variant_templates[entry.variant],
        impairment_engine=impairment_engine,
    )
    try:
        with lab:
            description = LabDescription.model_validate(lab.describe())
            progress(f"variant {name}: lab up in {(lab.up_seconds or 0) * 1000:.0f} ms; running the workload")
            workload = Workload(
                lab,
                out_dir,
                timeline_templates=loaded.timeline_templates,
                progress=lambda message: progress(f"variant {name}: {message}"),
                monitor=monitor,
                name=name,
            ).run()
            finished = time.perf_counter()
    except EngineFailed as exc:  # an engine died as the lab came down: the workload's record is still true
        if workload is None:
            raise
        workload.fault = workload.fault or str(exc)
    description.impairment_engine.stats = lab.engine_stats  # final counters, after teardown
    workload.phases["lab_up"] = round(lab.up_seconds or 0.0, 4)
    workload.phases["teardown"] = round(time.perf_counter() - finished, 4)
    write_variant_files(out_dir, workload, description)
    if workload.fault is not None:
        raise RunFailed(f"variant {name}: {workload.fault}", out_dir)
    return VariantRun(name, entry.variant, entry.repetition, out_dir, workload, description)


class RunFailed(LabError):
    """A variant's workload stopped at a fault of the testbed; its partial records are in ``variant_dir``."""

    def __init__(self, message: str, variant_dir: Path):
        super().__init__(message)
        self.variant_dir = variant_dir

    def __reduce__(self) -> tuple[Any, ...]:  # crosses from a --parallel worker
        return (RunFailed, (str(self), self.variant_dir))


def write_variant_files(variant_dir: Path, workload: WorkloadRecord, lab: LabDescription) -> None:
    """What scoring reads besides the packet files: workload.json and lab.json."""
    workload.save(variant_dir / WORKLOAD_FILE)
    lab.save(variant_dir / LAB_FILE)


def run_scenario(
    loaded: LoadedScenario,
    out_dir: Path,
    *,
    variants: list[str] | None = None,
    repeat: int = 1,
    parallel: int = 1,
    impairment_engine: str | None = None,
    backend: str | None = None,
    progress: Progress = _quiet,
    monitor: Monitor | None = None,
) -> Run:
    """Run the named variants (default: all), ``repeat`` times, ``parallel`` at once; each gets a fresh lab."""
    entries = run_names(variants or loaded.variant_names, repeat)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = Run(loaded.scenario.name, out_dir)
    jobs = [RunJob(loaded, entry, out_dir / entry.name) for entry in entries]
    try:
        run.variants = run_jobs(
            jobs,
            parallel=parallel,
            backend=backend,
            impairment_engine=impairment_engine,
            progress=progress,
            monitor=monitor,
        )
    except RunFailed as exc:  # what ran until the fault stays readable: run.json lists the variants recorded
        recorded = [entry for entry in entries if (out_dir / entry.name / WORKLOAD_FILE).exists()]
        write_run_info(loaded, out_dir, recorded, None, parallel=min(parallel, len(entries)))
        raise LabError(
            f"{exc}\npartial results in {out_dir} (`testbed score {out_dir}` scores what was recorded)"
        ) from None
    started = min((v.workload.t0 for v in run.variants), default=None)
    write_run_info(loaded, out_dir, entries, started, parallel=min(parallel, len(entries)))
    return run


@dataclass(frozen=True)
class RunJob:
    """One variant run to do: a (trial's) scenario, which variant and repetition, where its files go."""

    loaded: LoadedScenario
    entry: VariantRunEntry
    out_dir: Path


def run_jobs(
    jobs: list[RunJob],
    *,
    parallel: int = 1,
    backend: str | None = None,
    impairment_engine: str | None = None,
    progress: Progress = _quiet,
    monitor: Monitor | None = None,
) -> list[VariantRun]:
    """Run the jobs in order, or ``parallel`` at once, each in its own process and its own lab (a lab's
    signal handlers and namespaces belong to one process). All have finished when this returns, so scoring
    never competes with a running call for the cores. A failed job stops the ones not yet started."""
    if parallel <= 1 or len(jobs) <= 1:
        with forkserver.serving(backend or jobs[0].loaded.scenario.backend if jobs else "netns"):
            return [
                run_variant(
                    job.loaded,
                    job.entry,
                    job.out_dir,
                    backend=backend,
                    impairment_engine=impairment_engine,
                    progress=progress,
                    monitor=monitor,
                )
                for job in jobs
            ]
    with ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_run_job, job, backend, impairment_engine) for job in jobs]
        progress(f"{len(jobs)} runs, {parallel} at once, each in its own lab")
        try:
            done = []
            for job, future in zip(jobs, futures, strict=True):
                done.append(future.result())
                progress(f"{job.out_dir.name}: done")
            return done
        except BaseException:  # a failed run, Ctrl-C, SIGTERM: the running runs take their labs down now
            workers = getattr(pool, "_processes", None) or {}  # pid -> process (the executor's own record)
            for pid in list(workers):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _run_job(job: RunJob, backend: str | None, impairment_engine: str | None) -> VariantRun:
    """A worker process's job: progress goes to its stderr, prefixed, since a callback cannot cross over."""

    def progress(message: str) -> None:
        print(f"[{job.out_dir.parent.name}/{job.out_dir.name}] {message}", file=sys.stderr, flush=True)

    with forkserver.serving(backend or job.loaded.scenario.backend):
        return run_variant(
            job.loaded, job.entry, job.out_dir, backend=backend, impairment_engine=impairment_engine, progress=progress
        )


def write_run_info(
    loaded: LoadedScenario,
    out_dir: Path,
    entries: list[VariantRunEntry],
    started: float | None,
    *,
    parallel: int = 1,
    trial: dict[str, Any] | None = None,
) -> None:
    """run.json: what ran, in order, from which scenario file (with a sweep trial's values), on which
    machine (scoring reads it)."""
    RunInfo(
        scenario=loaded.scenario.name,
        scenario_file=str(loaded.path.resolve()),
        variants=[entry.name for entry in entries],
        runs=entries,
        host=platform.node(),
        kernel=platform.release(),
        python=platform.python_version(),
        started=started,
        software=software_versions(),
        parallel=parallel,
        experiment=experiment_fingerprint(loaded),
        experiment_sections=experiment_sections(loaded),
        trial=trial,
    ).save(out_dir / RUN_FILE)


def software_versions() -> dict[str, str]:
    """The call stack's versions on this host (a browser's own version is in each of its legs)."""
    versions = {}
    for name in ("aiortc", "av", "playwright", "pesq"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def score_run(
    run_dir: Path, info: RunInfo, *, options: ScoringOptions = DEFAULT_SCORING, progress: Progress = _quiet
) -> list[result_file.ScoredVariant]:
    """Score every variant run of a run directory from its files, on every core (``rescore_pool``;
    writes each variant's scores.json)."""
    variants = [(run_dir / e.name, WorkloadRecord.load(run_dir / e.name / WORKLOAD_FILE)) for e in info.runs]
    all_scores = score_variants(variants, options, progress)
    return [
        result_file.ScoredVariant(
            entry.name, entry.variant, entry.repetition, workload, LabDescription.load(variant_dir / LAB_FILE), scores
        )
        for entry, (variant_dir, workload), scores in zip(info.runs, variants, all_scores, strict=True)
    ]


def finish(
    loaded: LoadedScenario,
    out_dir: Path,
    *,
    junit: Path | None = None,
    options: ScoringOptions = DEFAULT_SCORING,
    baseline: Baseline | None = None,
    progress: Progress = _quiet,
    script_dir: Path | None = None,
) -> RunResult:
    """Score every variant of a run directory, check the thresholds (and the ``baseline``, when given),
    and write result.json, junit.xml and report.html. Works on a fresh run and on a stored one
    (``testbed score``); ``options`` say what scoring computes (``ScoringOptions``); ``script_dir``: where
    the report's plotly script goes (a sweep's trials share the sweep's; default: beside the report)."""
    info = RunInfo.load(out_dir / RUN_FILE)
    scored = score_run(out_dir, info, options=options, progress=progress)
    by_variant: dict[str, list[CallScores]] = {}
    for variant in scored:  # repetitions of a variant are checked together, each call as its own
        suffix = "" if variant.repetition == 1 else f"#{variant.repetition}"
        by_variant.setdefault(variant.variant, []).extend(
            call.model_copy(update={"id": call.id + suffix}) for call in variant.scores.calls
        )
    progress("checking thresholds, writing the reports")
    checks = result_file.fault_checks(scored) + evaluate(loaded.scenario.thresholds, by_variant)
    if baseline is not None:
        runs = [(v.variant, v.repetition, v.scores.calls) for v in scored]
        checks += baseline_report.compare(runs, baseline.result, str(baseline.path), baseline.tolerance)
    result = result_file.build(loaded, info, scored, checks)
    result_file.save(result, out_dir)
    junit_report.write(result, out_dir / "junit.xml")
    if junit is not None:
        junit_report.write(result, junit)
    html.write(result, out_dir / "report.html", script_dir)
    return result
