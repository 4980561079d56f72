"""What a shard or a merge of shards writes: the per-call rows, the statistics recomputed from them, and
the report. A merge and a single shard go through the same code, so their figures cannot differ."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.results import RunResult
from testbed.results.sweep import SWEEP_RESULT_FILE, SweepFile, SweepResult, TrialInfo
from testbed.sweep.stats import SWEEP_METRICS, call_rows, sweep_statistics

ROWS_FILE = "sweep-rows.jsonl"
REPORT_FILE = "sweep.html"
OUTPUT_FILES = (ROWS_FILE, SWEEP_RESULT_FILE, REPORT_FILE, "plotly.min.js")


@dataclass
class Collected:
    """Trials with results, from one shard or several: their rows and verdicts, where each trial lives."""

    sweep_files: list[SweepFile]
    infos: list[TrialInfo] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    verdicts: dict[str, bool | None] = field(default_factory=dict)
    trial_dirs: dict[str, Path] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    result: SweepResult | None = None

    def add(self, info: TrialInfo, result: RunResult, trial_dir: Path) -> None:
        self.infos.append(info)
        self.rows += call_rows(info, result)
        self.verdicts[info.trial] = result.verdict.passed if result.verdict.checks else None
        self.trial_dirs[info.trial] = trial_dir


def build_result(collected: Collected) -> SweepResult:
    """The statistics of every trial collected, from its rows alone."""
    plan = collected.sweep_files[0]
    trials, comparisons = sweep_statistics(collected.infos, collected.rows, collected.verdicts)
    return SweepResult(
        scenario=plan.scenario,
        plan_fingerprint=plan.plan_fingerprint,
        axes=plan.axes,
        repeat=plan.repeat,
        metrics=list(SWEEP_METRICS),
        trials=trials,
        comparisons=comparisons,
        shards=[sweep.shard for sweep in collected.sweep_files],
        missing=collected.missing,
        duplicated=collected.duplicated,
        parallel=max(sweep.shard.parallel for sweep in collected.sweep_files),
    )


def write_outputs(collected: Collected, out_dir: Path) -> SweepResult:
    """sweep-rows.jsonl, sweep-result.json and sweep.html in ``out_dir``; the report links each trial's."""
    from testbed.report import sweep_html  # plotly: imported when a report is written

    result = build_result(collected)
    collected.result = result
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ROWS_FILE, "w") as rows:
        for row in collected.rows:
            rows.write(json.dumps(row) + "\n")
    result.save(out_dir / SWEEP_RESULT_FILE)
    links = {
        trial: os.path.relpath(directory / "report.html", out_dir) for trial, directory in collected.trial_dirs.items()
    }
    sweep_html.write(result, out_dir / REPORT_FILE, trial_links=links)
    return result
