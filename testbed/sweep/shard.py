"""One shard of a sweep: its trials' runs in their order (``parallel`` at once, each in its own lab),
then, with every lab down, each trial scored as a run of its own, then the shard's statistics.

The shard comes from ``--shard I/N``, else from the engine that started the process: GitLab's
``CI_NODE_INDEX``/``CI_NODE_TOTAL`` (1-based), or a Kubernetes Indexed Job's ``JOB_COMPLETION_INDEX``
(0-based) with the total in ``TESTBED_SHARDS`` (the generated Job sets it). Without any: the whole plan.

A shard's directory::

    sweep.json                       the plan, this shard, its seed and run order, host and kernel
    trials/<trial>/trial.json        the trial's parameter values
    trials/<trial>/<variant>[-rK]/   one repetition: a variant run's files, as `testbed run` writes them
    trials/<trial>/result.json ...   the trial scored as a run (report.html, junit.xml)
    sweep-rows.jsonl                 one row per call direction of every repetition: what statistics use
    sweep-result.json, sweep.html    the statistics, the plots
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import InputError
from testbed.results.sweep import SWEEP_FILE, TRIAL_FILE, TRIALS_DIR, ShardInfo, SweepFile, TrialInfo
from testbed.runner import Progress, RunJob, finish, run_entry, run_jobs, run_names, write_run_info
from testbed.scoring.options import DEFAULT_SCORING, ScoringOptions
from testbed.sweep.outputs import OUTPUT_FILES, Collected, write_outputs
from testbed.sweep.plan import SweepPlan, Trial, new_seed, run_order, shard_trials


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    total: int
    source: str


def shard_from(option: str | None, environ: Mapping[str, str] = os.environ) -> Shard:
    """The shard asked for: ``--shard I/N``, else GitLab's or a Kubernetes Indexed Job's variables."""
    if option:
        match = re.fullmatch(r"(\d+)/(\d+)", option.strip())
        if not match or not 1 <= int(match[1]) <= int(match[2]):
            raise InputError(f"--shard {option!r}: give I/N with 1 <= I <= N (shard 2 of 4: 2/4)")
        return Shard(int(match[1]), int(match[2]), "--shard")
    if environ.get("CI_NODE_INDEX") and environ.get("CI_NODE_TOTAL"):
        return _checked(environ["CI_NODE_INDEX"], environ["CI_NODE_TOTAL"], 0, "CI_NODE_INDEX/CI_NODE_TOTAL")
    if environ.get("JOB_COMPLETION_INDEX"):
        if not environ.get("TESTBED_SHARDS"):
            raise InputError("JOB_COMPLETION_INDEX is set but not TESTBED_SHARDS (the Job's completions)")
        return _checked(environ["JOB_COMPLETION_INDEX"], environ["TESTBED_SHARDS"], 1, "JOB_COMPLETION_INDEX")
    return Shard(1, 1, "whole plan")


def _checked(index: str, total: str, offset: int, source: str) -> Shard:
    if not (index.isdigit() and total.isdigit() and 1 <= int(index) + offset <= int(total)):
        raise InputError(f"{source}: {index}/{total} is not a shard (index {1 - offset}..N of N)")
    return Shard(int(index) + offset, int(total), source)


def run_shard(
    plan: SweepPlan,
    out_dir: Path,
    shard: Shard,
    *,
    parallel: int = 1,
    backend: str | None = None,
    impairment_engine: str | None = None,
    scoring: ScoringOptions = DEFAULT_SCORING,
    progress: Progress = lambda message: None,
) -> Collected:
    """Run, score and summarise this shard's trials; the files are in ``out_dir`` (see the module)."""
    trials = shard_trials(plan, shard.index, shard.total)
    if clear_previous_attempt(out_dir, plan):
        progress(f"{out_dir}: a previous attempt of this shard removed (a retry starts over)")
    seed = (plan.seed if plan.seed is not None else new_seed()) if plan.shuffled else None
    order = run_order(trials, plan.repeat, seed)
    at_once = max(1, min(parallel, len(order)))
    sweep = SweepFile(
        scenario=plan.loaded.scenario.name,
        scenario_file=str(plan.loaded.path.resolve()),
        plan_fingerprint=plan.fingerprint,
        experiment_fingerprint=plan.experiment_fingerprint,
        axes=plan.axes,
        repeat=plan.repeat,
        trials=[trial.id for trial in plan.trials],
        shard=ShardInfo(
            index=shard.index,
            total=shard.total,
            host=platform.node(),
            kernel=platform.release(),
            python=platform.python_version(),
            started=time.time(),
            seed=seed,
            order=[f"{trial.id}/{run_entry(trial.variant, repetition).name}" for trial, repetition in order],
            parallel=at_once,
            source=shard.source,
        ),
        shard_trials=[trial.id for trial in trials],
    )
    sweep.save(out_dir / SWEEP_FILE)
    infos = {trial.id: _trial_info(plan, trial, sweep.shard.started) for trial in trials}
    for trial in trials:
        infos[trial.id].save(out_dir / TRIALS_DIR / trial.id / TRIAL_FILE)
    progress(
        f"shard {shard.index}/{shard.total} ({shard.source}): {len(trials)} of {len(plan.trials)} trials, "
        f"{len(order)} runs, {'seed ' + str(seed) if seed is not None else 'listed order'}, {at_once} at once"
    )
    entries = [(trial, run_entry(trial.variant, repetition)) for trial, repetition in order]
    jobs = [
        RunJob(plan.scenarios[trial.id], entry, out_dir / TRIALS_DIR / trial.id / entry.name)
        for trial, entry in entries
    ]
    done = run_jobs(jobs, parallel=at_once, backend=backend, impairment_engine=impairment_engine, progress=progress)
    collected = Collected(sweep_files=[sweep])
    for number, trial in enumerate(trials, start=1):
        trial_dir = out_dir / TRIALS_DIR / trial.id
        runs = [run for run in done if run.out_dir.parent == trial_dir]
        started = min(r.workload.t0 for r in runs)
        write_run_info(
            plan.scenarios[trial.id],
            trial_dir,
            run_names([trial.variant], plan.repeat),
            started,
            parallel=at_once,
            trial=trial.parameters,
        )
        progress(f"scoring trial {number}/{len(trials)}: {trial.id}")
        result = finish(plan.scenarios[trial.id], trial_dir, options=scoring, script_dir=out_dir)  # one plotly copy
        collected.add(infos[trial.id], result, trial_dir)
    sweep.shard.finished = time.time()
    sweep.save(out_dir / SWEEP_FILE)
    write_outputs(collected, out_dir)
    return collected


def clear_previous_attempt(out_dir: Path, plan: SweepPlan) -> bool:
    """A directory that holds an attempt at a shard of this plan (a Kubernetes retry writes where the
    failed pod did) is emptied of its trials and outputs, so none of its results pass for the new
    attempt's; a directory of anything else is refused."""
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return False
    if not (out_dir / SWEEP_FILE).is_file():
        raise InputError(f"{out_dir}: not empty and not a shard of a sweep; give an empty or new --out")
    previous = SweepFile.load(out_dir / SWEEP_FILE)
    if previous.plan_fingerprint != plan.fingerprint:
        raise InputError(f"{out_dir}: holds a shard of another plan ({previous.plan_fingerprint}); give another --out")
    shutil.rmtree(out_dir / TRIALS_DIR, ignore_errors=True)
    for name in (SWEEP_FILE, *OUTPUT_FILES):
        (out_dir / name).unlink(missing_ok=True)
    return True


def _trial_info(plan: SweepPlan, trial: Trial, attempt: float) -> TrialInfo:
    return TrialInfo(
        trial=trial.id,
        index=trial.index,
        point=trial.point,
        variant=trial.variant,
        parameters=trial.parameters,
        repetitions=plan.repeat,
        plan_fingerprint=plan.fingerprint,
        attempt=attempt,
    )
