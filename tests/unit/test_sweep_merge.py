"""Merging shards from their files: results an earlier attempt at a shard left are not this attempt's,
a shard directory is reused only for a retry of the same plan, and missing trials are listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.cli import main
from testbed.errors import InputError
from testbed.results.sweep import Axis, ShardInfo, SweepFile, TrialInfo
from testbed.scenario import load_scenario
from testbed.sweep.merge import collect
from testbed.sweep.plan import make_plan
from testbed.sweep.shard import clear_previous_attempt
from tests.helpers import REPO
from tests.helpers.results import run_result

TRIALS = ["p1-fifo", "p1-ef"]


def _shard(directory: Path, plan: str, started: float, trials: dict[str, float]) -> Path:
    """A shard directory whose trials (trial -> the attempt that wrote it) each have a result.json."""
    shard = ShardInfo(
        index=1, total=1, host="h", kernel="k", python="3", started=started, seed=None, order=[], source="test"
    )
    SweepFile(
        scenario="s",
        scenario_file="s.yaml",
        plan_fingerprint=plan,
        experiment_fingerprint="e",
        axes=[Axis(path="variant", values=["fifo", "ef"])],
        repeat=1,
        trials=TRIALS,
        shard=shard,
        shard_trials=list(trials),
    ).save(directory / "sweep.json")
    for index, (trial, attempt) in enumerate(trials.items()):
        info = TrialInfo(
            trial=trial,
            index=index,
            point="p1",
            variant=trial.split("-")[1],
            parameters={"variant": trial.split("-")[1]},
            repetitions=1,
            plan_fingerprint=plan,
            attempt=attempt,
        )
        info.save(directory / "trials" / trial / "trial.json")
        run_result([4.4]).save(directory / "trials" / trial / "result.json")
    return directory


def test_a_trial_left_by_an_earlier_attempt_counts_as_missing(tmp_path):
    shard = _shard(tmp_path / "s1", "plan", 200.0, {"p1-fifo": 200.0, "p1-ef": 100.0})
    collected = collect([shard])
    assert [i.trial for i in collected.infos] == ["p1-fifo"] and collected.missing == ["p1-ef"]
    assert main(["merge", str(shard), "--out", str(tmp_path / "merged")]) == 1  # incomplete
    assert (tmp_path / "merged" / "sweep-result.json").is_file()


def test_duplicated_trials_are_listed_and_the_first_kept(tmp_path):
    one = _shard(tmp_path / "s1", "plan", 1.0, {"p1-fifo": 1.0, "p1-ef": 1.0})
    two = _shard(tmp_path / "s2", "plan", 2.0, {"p1-ef": 2.0})
    collected = collect([one, two])
    assert collected.duplicated == ["p1-ef"] and collected.missing == []
    assert collected.trial_dirs["p1-ef"] == one / "trials" / "p1-ef"
    with pytest.raises(InputError, match="a shard of another plan"):
        collect([one, _shard(tmp_path / "s3", "other", 3.0, {"p1-ef": 3.0})])


def test_a_shard_directory_is_reused_only_for_a_retry_of_the_same_plan(tmp_path):
    plan = make_plan(load_scenario(REPO / "scenarios" / "uplink-sweep.yaml"))
    retry = _shard(tmp_path / "retry", plan.fingerprint, 1.0, {"p1-fifo": 1.0})
    (retry / "sweep-result.json").write_text("{}")
    assert clear_previous_attempt(retry, plan)
    assert list(retry.iterdir()) == []
    assert not clear_previous_attempt(tmp_path / "new", plan)
    with pytest.raises(InputError, match="a shard of another plan"):
        clear_previous_attempt(_shard(tmp_path / "other", "other", 1.0, {}), plan)
    (tmp_path / "else").mkdir()
    (tmp_path / "else" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a shard of a sweep"):
        clear_previous_attempt(tmp_path / "else", plan)
