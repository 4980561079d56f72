"""Sweeps, shards, merges, baselines and runs side by side, with real labs and calls: the uplink-sweep
scenario (one call beside a 6 Mbit/s UDP upload) with short calls."""

from __future__ import annotations

import json
import signal
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import yaml

from testbed.results.sweep import SweepFile, SweepResult, TrialInfo
from testbed.sweep.stats import sweep_statistics
from tests.helpers import REPO
from tests.helpers.lab import run_testbed, start_testbed, wait_for_line

SCENARIO = REPO / "scenarios" / "uplink-sweep.yaml"


def _scenario(tmp_path: Path, name: str = "sweep.yaml", **changes) -> Path:
    """uplink-sweep with 4 s calls; ``changes`` edit the loaded YAML (a function of the data)."""
    data = yaml.safe_load(SCENARIO.read_text())
    data["calls"][0]["talk"] = "4s"
    for change in changes.values():
        change(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _rows(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "sweep-rows.jsonl").read_text().splitlines()]


def test_two_shards_of_a_sweep_partition_it_and_merge_to_the_statistics_of_their_rows(registry, no_leftovers, tmp_path):
    """3 rates x 2 templates x 3 repetitions in two shards: each trial runs in exactly one shard, in a
    shuffled order; merging gives the statistics of the union of the shards' per-call rows; the curves
    have their intervals (75 % with 3 repetitions); EF priority's gain at 2 Mbit/s holds, at 10 Mbit/s
    (room for both) it does not. A shard of another plan is refused with exit 2."""
    path = _scenario(tmp_path)
    shards = [tmp_path / "shard1", tmp_path / "shard2"]
    for index, directory in enumerate(shards, start=1):
        done = run_testbed("sweep", "run", str(path), "--shard", f"{index}/2", "--out", str(directory), timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = [SweepFile.load(directory / "sweep.json") for directory in shards]
    owned = [trial for f in files for trial in f.shard_trials]
    assert sorted(owned) == sorted(files[0].trials) and len(files[0].trials) == 6  # every trial once, none twice
    for f in files:
        variant = {t: t.split("-", 1)[1] for t in f.shard_trials}
        listed = [f"{t}/{variant[t]}{'' if r == 1 else f'-r{r}'}" for r in (1, 2, 3) for t in f.shard_trials]
        assert sorted(f.shard.order) == sorted(listed) and f.shard.seed is not None
        assert f.shard.order != listed  # shuffled (9 runs: listed order by chance 1 in 362,880)

    merged = tmp_path / "merged"
    done = run_testbed("merge", *map(str, shards), "--out", str(merged))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = SweepResult.load(merged / "sweep-result.json")
    assert result.missing == [] and result.duplicated == [] and len(result.shards) == 2
    infos = [
        TrialInfo.load(d / "trials" / t / "trial.json")
        for d, f in zip(shards, files, strict=True)
        for t in f.shard_trials
    ]
    trials, comparisons = sweep_statistics(infos, _rows(shards[0]) + _rows(shards[1]))
    assert [t.model_dump(exclude={"passed"}) for t in result.trials] == [
        t.model_dump(exclude={"passed"}) for t in trials
    ]
    assert result.comparisons == comparisons
    by_trial = {t.trial: t for t in result.trials}
    for trial in result.trials:
        assert trial.repetitions == 3
        mos = trial.metrics["mos_emodel"]
        assert mos.interval is not None and mos.interval.level == 0.75 and mos.interval.low <= mos.median
    assert by_trial["p1-ef-priority"].metrics["mos_emodel"].median > 4.0
    assert by_trial["p1-fifo"].metrics["mos_emodel"].median < 3.0
    gains = {(c.parameters["links.wan.router.rate"], c.metric): c for c in result.comparisons}
    gain = gains[("2mbit", "mos_emodel")]  # 3 pairs reach 75 %: it excludes 0 there, "holds" needs 95 %
    assert gain.excludes_zero and not gain.holds and gain.median > 1.0 and gain.interval.level == 0.75
    assert not gains[("10mbit", "mos_emodel")].excludes_zero
    report = (merged / "sweep.html").read_text()
    assert "plotly.min.js" in report and (merged / "plotly.min.js").is_file() and "75%" in report
    for shard in shards:  # the trials' reports share the shard's one copy of the plotly script
        trial_reports = list((shard / "trials").glob("*/report.html"))
        assert trial_reports and (shard / "plotly.min.js").is_file()
        for trial_report in trial_reports:
            assert '<script src="../../plotly.min.js"></script>' in trial_report.read_text()
            assert not (trial_report.parent / "plotly.min.js").exists()

    other = _scenario(tmp_path, "other.yaml", one=lambda d: d["sweep"].update(parameters={"variant": ["fifo"]}))
    odd = tmp_path / "odd"
    done = run_testbed("sweep", "run", str(other), "--repeat", "1", "--no-pesq", "--out", str(odd), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_testbed("merge", str(shards[0]), str(odd), "--out", str(tmp_path / "bad"))
    assert done.returncode == 2 and "a shard of another plan" in done.stderr, done.stderr
    assert not (tmp_path / "bad").exists()


def test_a_baseline_passes_the_same_design_and_fails_fifo_in_its_place(registry, no_leftovers, tmp_path):
    """A stored run of ef-priority at 2 Mbit/s (two repetitions: its spread is the tolerance); a fresh
    run of the same scenario passes against it; the same experiment with fifo as the template under test
    fails with a JUnit case naming the metric, the call and both values; another experiment is refused."""
    path = _scenario(tmp_path, rate=lambda d: d["links"]["wan"]["router"].update(rate="2mbit"))
    baseline = tmp_path / "baseline"
    done = run_testbed(
        "run", str(path), "--variant", "ef-priority", "--repeat", "2", "--out", str(baseline), timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]

    fresh = tmp_path / "fresh"
    done = run_testbed(
        "run", str(path), "--variant", "ef-priority", "--baseline", str(baseline), "--out", str(fresh), timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    checks = [c for c in json.loads((fresh / "result.json").read_text())["thresholds"] if "baseline" in c["rule"]]
    assert len(checks) == 4 and all(c["passed"] for c in checks)  # 2 directions x (E-model, PESQ)
    assert all("2x the baseline's spread" in c["rule"] for c in checks), checks

    def fifo_under_test(data: dict) -> None:
        data["variants"]["ef-priority"]["router"]["template"] = "fifo"

    regressed = _scenario(
        tmp_path,
        "regressed.yaml",
        rate=lambda d: d["links"]["wan"]["router"].update(rate="2mbit"),
        fifo=fifo_under_test,
    )
    out = tmp_path / "regressed"
    done = run_testbed(
        "run", str(regressed), "--variant", "ef-priority", "--baseline", str(baseline), "--out", str(out), timeout=300
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    cases = ElementTree.parse(out / "junit.xml").getroot().iter("testcase")
    failed = [c for c in cases if c.find("failure") is not None]
    names = [c.get("name") for c in failed]
    assert any("call" in n and "client->gateway" in n and "mos_emodel no worse than the baseline" in n for n in names)
    message = next(c for c in failed if "baseline" in c.get("name")).find("failure").get("message")
    assert "vs baseline" in message and "regressed" in message, message

    other = _scenario(tmp_path, "other.yaml", codec=lambda d: d["calls"][0].update(codec="pcmu"))
    done = run_testbed("run", str(other), "--baseline", str(baseline), "--out", str(tmp_path / "never"))
    assert done.returncode == 2 and "a baseline of another experiment" in done.stderr and "calls" in done.stderr
    assert not (tmp_path / "never").exists()


def test_two_variants_side_by_side(registry, no_leftovers, tmp_path):
    """--parallel 2: both variants run at once in their own labs, complete, and say so; the harness's
    lateness is recorded for each (flagged, not scored, when it fell behind)."""
    path = _scenario(tmp_path, rate=lambda d: d["links"]["wan"]["router"].update(rate="2mbit"))
    out = tmp_path / "out"
    done = run_testbed("run", str(path), "--parallel", "2", "--out", str(out), timeout=300)
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["environment"]["parallel"] == 2 and "2 variant runs at once" in (out / "report.html").read_text()
    variants = {v["variant"]: v for v in result["variants"]}
    assert set(variants) == {"fifo", "ef-priority"}
    starts = sorted(v["t0"] for v in result["variants"])
    assert starts[1] - starts[0] < 4.0  # they overlapped: each workload lasts longer than that
    for variant in variants.values():  # fifo's call may not even connect beside the upload: 94 % loss
        assert len(variant["calls"]) == 1 and variant["harness"]["engine_late_over_1ms"] is not None
    assert variants["ef-priority"]["harness"]["pacing_p99_ms"] is not None
    assert variants["ef-priority"]["calls"][0]["outcome"] == "connected"
    assert variants["ef-priority"]["calls"][0]["directions"]["client->gateway"]["mos_emodel"] > 4.0


def test_ctrl_c_during_runs_side_by_side_takes_both_labs_down(registry, no_leftovers, tmp_path):
    """SIGINT to `testbed run --parallel 2` alone (not its process group): both workers' labs come down,
    exit 130, nothing left (no_leftovers)."""
    path = _scenario(tmp_path, long=lambda d: d["calls"][0].update(talk="30s"))
    process = start_testbed("run", str(path), "--parallel", "2", "--out", str(tmp_path / "out"))
    seen = wait_for_line(process, "running the workload", timeout=60, stream="stderr")
    if seen.count("running the workload") < 2:
        wait_for_line(process, "running the workload", timeout=60, stream="stderr")
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    assert registry.runs() == []


def test_the_python_api_runs_a_sweep_and_a_trial_rescores_as_it_ran(registry, no_leftovers, tmp_path):
    """testbed.load(...).sweep(): one trial (10 Mbit/s, ef-priority) twice; its directory re-scores with the
    trial's values (its run.json names them), not the base scenario's."""
    import testbed

    def one_trial(data: dict) -> None:
        data["sweep"] = {"parameters": {"links.wan.router.rate": ["10mbit"], "variant": ["ef-priority"]}, "repeat": 2}
        # a gain rule needs fifo beside ef-priority: the base scenario's, not the trial's (gains are the
        # sweep's comparisons), so re-scoring with the base scenario would fail it
        data["thresholds"].append({"metric": "mos_emodel", "min": 1.0, "variant": "ef-priority", "over": "fifo"})

    experiment = testbed.load(_scenario(tmp_path, one=one_trial))
    assert [t.id for t in experiment.plan().trials] == ["p1-ef-priority"]
    result = experiment.sweep(tmp_path / "out", scoring=testbed.ScoringOptions(pesq=False))
    (trial,) = result.trials
    assert trial.repetitions == 2 and trial.metrics["mos_emodel"].median > 4.0 and trial.passed
    rescored = testbed.score(tmp_path / "out" / "trials" / "p1-ef-priority", scoring=testbed.ScoringOptions(pesq=False))
    assert rescored.verdict.passed and [v.name for v in rescored.variants] == ["ef-priority", "ef-priority-r2"]
    info = json.loads((tmp_path / "out" / "trials" / "p1-ef-priority" / "run.json").read_text())
    assert info["trial"] == {"links.wan.router.rate": "10mbit", "variant": "ef-priority"}
