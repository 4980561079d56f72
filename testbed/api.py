"""The public Python API: what the ``testbed`` command does, as objects a script can hold.

    import testbed
    experiment = testbed.load("scenarios/office.yaml")
    with experiment.lab("ef-priority") as lab:
        print(lab["client"].run(["ip", "route"]).stdout)
        lab.set_link("wan", router={"rate": "5mbit"})
        run = lab.workload("results/x").run()
    result = testbed.score(run)          # a typed RunResult: variants -> calls -> directions

The command line is one client of these objects; a lab built here is the same network `testbed lab up`
builds from the same scenario and variant (its router template included).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from testbed.errors import InputError
from testbed.lab import Lab
from testbed.lab.backends import Node
from testbed.report.baseline import load_baseline
from testbed.results import RUN_FILE, LabDescription, RunInfo, RunResult
from testbed.results.run import VariantRunEntry
from testbed.results.sweep import SweepResult
from testbed.runner import (
    Baseline,
    Progress,
    default_out_dir,
    finish,
    run_scenario,
    write_run_info,
    write_variant_files,
)
from testbed.scenario import LoadedScenario, load_scenario
from testbed.scenario.load import find_template, load_scenario_document, load_template
from testbed.scenario.model import Impairment, Scenario
from testbed.scoring.options import DEFAULT_SCORING, ScoringOptions
from testbed.sweep.merge import merge as merge_shards
from testbed.sweep.plan import SweepPlan, make_plan, trial_document
from testbed.sweep.shard import run_shard, shard_from
from testbed.workload import Workload


@dataclass(frozen=True)
class RunDir:
    """A run directory written by a workload or a run, with the scenario that made it (for scoring)."""

    path: Path
    experiment: Experiment


class Experiment:
    """A loaded, validated scenario: build one of its variants' labs, or run and score all of it."""

    def __init__(self, loaded: LoadedScenario):
        self.loaded = loaded

    @property
    def name(self) -> str:
        return self.loaded.scenario.name

    @property
    def variants(self) -> list[str]:
        return self.loaded.variant_names

    def scenario(self, variant: str | None = None) -> Scenario:
        """The typed scenario as a variant sees it (the first variant by default)."""
        return self.loaded.variant(variant or self.variants[0])

    def lab(
        self,
        variant: str | None = None,
        *,
        backend: str | None = None,
        impairment_engine: str | None = None,
        keep: bool = False,
        purpose: str | None = None,
    ) -> LabSession:
        """The variant's network, built on ``with`` and removed when the block ends (unless ``keep``:
        then it stays for `testbed lab exec` / `lab down`, as `testbed lab up` leaves it)."""
        name = variant or self.variants[0]  # an unknown name: ScenarioError from LoadedScenario.variant
        return LabSession(
            self,
            name,
            backend=backend,
            impairment_engine=impairment_engine,
            keep=keep,
            purpose=purpose or f"api {self.loaded.path} {name}",
        )

    def run(
        self,
        out_dir: str | Path | None = None,
        *,
        variants: list[str] | None = None,
        repeat: int = 1,
        parallel: int = 1,
        scoring: ScoringOptions = DEFAULT_SCORING,
        baseline: str | Path | None = None,
        tolerance: float | None = None,
        backend: str | None = None,
        impairment_engine: str | None = None,
    ) -> RunResult:
        """Run every variant (or the named ones), score them and write the reports, as `testbed run` does;
        with ``baseline`` (a stored run of the same experiment) regressions fail the verdict."""
        stored = None
        if baseline is not None:
            stored = Baseline(Path(baseline), load_baseline(Path(baseline), self.loaded), tolerance)
        directory = Path(out_dir) if out_dir is not None else default_out_dir(self.name)
        run_scenario(
            self.loaded,
            directory,
            variants=variants,
            repeat=repeat,
            parallel=parallel,
            backend=backend,
            impairment_engine=impairment_engine,
        )
        return finish(self.loaded, directory, options=scoring, baseline=stored)

    def plan(self, *, variants: list[str] | None = None, repeat: int | None = None) -> SweepPlan:
        """The scenario's sweep: every trial validated, nothing run (``testbed sweep plan``)."""
        return make_plan(self.loaded, variants=variants, repeat=repeat)

    def sweep(
        self,
        out_dir: str | Path | None = None,
        *,
        shard: str | None = None,
        parallel: int = 1,
        repeat: int | None = None,
        seed: int | None = None,
        scoring: ScoringOptions = DEFAULT_SCORING,
        backend: str | None = None,
        impairment_engine: str | None = None,
    ) -> SweepResult:
        """Run the sweep, or shard ``"I/N"`` of it, as `testbed sweep run` does; the statistics come back."""
        plan = make_plan(self.loaded, repeat=repeat, seed=seed)
        directory = Path(out_dir) if out_dir is not None else default_out_dir(f"{self.name}-sweep")
        collected = run_shard(
            plan,
            directory,
            shard_from(shard, {}),
            parallel=parallel,
            backend=backend,
            impairment_engine=impairment_engine,
            scoring=scoring,
        )
        assert collected.result is not None
        return collected.result


class LabSession:
    """A running lab of one variant: its nodes by name, live link changes, and workloads over it."""

    def __init__(
        self,
        experiment: Experiment,
        variant: str,
        *,
        backend: str | None,
        impairment_engine: str | None,
        keep: bool,
        purpose: str,
    ):
        self.experiment = experiment
        self.variant = variant
        loaded = experiment.loaded
        self.lab = Lab(
            loaded.variant(variant),
            backend=backend,
            keep=keep,
            purpose=purpose,
            router_template=loaded.variant_templates[variant],
            impairment_engine=impairment_engine,
        )

    def __enter__(self) -> LabSession:
        self.lab.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.lab.__exit__(kind, error, trace)

    def __getitem__(self, node: str) -> Node:
        return self.lab.node(node)

    @property
    def run_id(self) -> str:
        """The run id `testbed lab exec/down` and the registry know this lab by."""
        return self.lab.run_id

    @property
    def nodes(self) -> list[str]:
        return list(self.lab.nodes)

    def describe(self) -> dict[str, Any]:
        return self.lab.describe()

    def set_link(self, link: str, **ends: Impairment | dict[str, Any]) -> None:
        """New impairments for a link, per sending endpoint, in scenario units: ``router={"rate": "5mbit"}``."""
        self.lab.set_link(link, {node: Impairment.model_validate(value) for node, value in ends.items()})

    def set_router_template(self, name: str) -> None:
        """Switch the router to another template by name (resolved as the scenario resolves its own)."""
        scenario_file = self.experiment.loaded.path
        path = find_template(name, scenario_file)
        if path is None:
            raise InputError(f"router template {name!r} not found (next to {scenario_file} or shipped)")
        self.lab.set_router_template(load_template(path))

    def workload(self, out_dir: str | Path) -> WorkloadSession:
        """The variant's calls, traffic and timeline over this lab, written under ``out_dir``."""
        return WorkloadSession(self, Path(out_dir))


class WorkloadSession:
    def __init__(self, session: LabSession, out_dir: Path):
        self.session = session
        self.out_dir = out_dir

    def run(self) -> RunDir:
        """Run the workload now; the files land in ``out_dir/<variant>/`` with a run.json beside them."""
        loaded = self.session.experiment.loaded
        entry = VariantRunEntry(name=self.session.variant, variant=self.session.variant)
        variant_dir = self.out_dir / entry.name
        lab = self.session.lab
        workload = Workload(lab, variant_dir, timeline_templates=loaded.timeline_templates).run()
        description = LabDescription.model_validate(lab.describe())
        description.impairment_engine.stats = lab.engine_counters()
        write_variant_files(variant_dir, workload, description)
        write_run_info(loaded, self.out_dir, [entry], workload.t0)
        return RunDir(self.out_dir, self.session.experiment)


def merge(shards: list[str | Path], out_dir: str | Path) -> SweepResult:
    """Shards of one sweep, joined: statistics recomputed from their per-call rows (``testbed merge``)."""
    collected = merge_shards([Path(shard) for shard in shards], Path(out_dir))
    assert collected.result is not None
    return collected.result


def load(path: str | Path) -> Experiment:
    """Read and validate a scenario file and the router templates it names (bad input: ScenarioError)."""
    return Experiment(load_scenario(path))


def score(run: RunDir | str | Path, *, scoring: ScoringOptions = DEFAULT_SCORING) -> RunResult:
    """Score a run directory, check the scenario's thresholds, write result.json and the reports."""
    if isinstance(run, RunDir):
        return finish(run.experiment.loaded, run.path, options=scoring)
    return score_run_dir(Path(run), scoring=scoring)


def score_run_dir(
    run_dir: Path, *, scoring: ScoringOptions = DEFAULT_SCORING, progress: Progress | None = None
) -> RunResult:
    """Score a stored run directory with the scenario file it names (thresholds come from there)."""
    run_file = run_dir / RUN_FILE
    if not run_file.exists():
        raise InputError(f"{run_dir}: not a run directory (no run.json); give a directory written by `testbed run`")
    info = RunInfo.load(run_file)
    scenario_file = Path(info.scenario_file)
    if not scenario_file.exists():
        raise InputError(f"{run_dir}: its scenario {scenario_file} is gone; thresholds need it")
    loaded = load_scenario(scenario_file)
    if info.trial is not None:  # a sweep's trial: the scenario with the trial's values set, as it ran
        try:
            loaded = load_scenario_document(trial_document(loaded, info.runs[0].variant, info.trial))
        except (ValueError, KeyError) as exc:
            raise InputError(f"{run_dir}: the trial's values no longer fit {scenario_file}: {exc}") from None
    return finish(loaded, run_dir, options=scoring, progress=progress or _quiet)


def _quiet(message: str) -> None:
    pass
