"""``testbed merge DIR...``: shards of one plan, run anywhere, joined into one result and report.

Every statistic is recomputed from the shards' raw per-call rows (the trials' result.json files), never
from their summaries: medians and percentiles do not merge. A shard of another plan (its plan
fingerprint differs: another scenario, template, sweep or repeat) is refused; trials of the plan that no
shard has results of are listed as missing (results an earlier attempt at a shard left count as
missing: each trial says which attempt wrote it), trials more than one shard ran as duplicated (the
first directory given wins). Each shard's host and kernel are kept.
"""

from __future__ import annotations

from pathlib import Path

from testbed.errors import InputError
from testbed.results import RESULT_FILE, RunResult
from testbed.results.sweep import SWEEP_FILE, TRIAL_FILE, TRIALS_DIR, SweepFile, TrialInfo
from testbed.sweep.outputs import Collected, write_outputs


def read_shards(directories: list[Path]) -> list[SweepFile]:
    """Every directory's sweep.json, all of one plan (else bad input naming the odd one out)."""
    if not directories:
        raise InputError("merge: name at least one shard directory")
    files = []
    for directory in directories:
        if not (directory / SWEEP_FILE).is_file():
            raise InputError(f"{directory}: not a sweep shard (no {SWEEP_FILE}; `testbed sweep run` writes one)")
        files.append(SweepFile.load(directory / SWEEP_FILE))
    first = files[0]
    for directory, sweep in zip(directories, files, strict=True):
        if sweep.plan_fingerprint != first.plan_fingerprint:
            raise InputError(
                f"{directory}: a shard of another plan ({sweep.scenario}, plan {sweep.plan_fingerprint}) than "
                f"{directories[0]} ({first.scenario}, plan {first.plan_fingerprint}): the scenario, its router "
                "templates, the sweep or the repetitions differ"
            )
    return files


def collect(directories: list[Path]) -> Collected:
    """The rows of every trial the shards finished, the missing and the duplicated trials."""
    files = read_shards(directories)
    collected = Collected(sweep_files=files)
    for directory, sweep in zip(directories, files, strict=True):
        for trial in sweep.shard_trials:
            trial_dir = directory / TRIALS_DIR / trial
            if not (trial_dir / RESULT_FILE).is_file():
                continue  # not finished (or not scored): missing unless another shard has it
            info = TrialInfo.load(trial_dir / TRIAL_FILE)
            if info.plan_fingerprint != sweep.plan_fingerprint:
                raise InputError(f"{trial_dir}: a trial of another plan ({info.plan_fingerprint})")
            if info.attempt != sweep.shard.started:
                continue  # left by an earlier attempt at this shard: not this attempt's result
            if trial in collected.trial_dirs:
                collected.duplicated.append(trial)
                continue
            collected.add(info, RunResult.load(trial_dir / RESULT_FILE), trial_dir)
    collected.missing = [trial for trial in files[0].trials if trial not in collected.trial_dirs]
    return collected


def merge(directories: list[Path], out_dir: Path) -> Collected:
    collected = collect(directories)
    write_outputs(collected, out_dir)
    return collected
