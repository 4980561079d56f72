"""``testbed sweep run|plan|k8s-job`` and ``testbed merge``: sweeps over parameter ranges, in shards."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from testbed.cli.common import (
    BackendOption,
    EngineOption,
    check_variants,
    err,
    out,
    progress_printer,
    reports_errors,
    require_root,
    warm_start,
)
from testbed.errors import ExitCode, InputError

if TYPE_CHECKING:
    from testbed.results.sweep import SweepResult
    from testbed.sweep.plan import SweepPlan

app = typer.Typer(no_args_is_help=True, help="Sweeps: trials over parameter ranges, repeated, sharded, merged.")
merge_app = typer.Typer()

ShardOption = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="run only shard I of N (1-based, e.g. 2/4); default from CI_NODE_INDEX/CI_NODE_TOTAL (GitLab) or "
        "JOB_COMPLETION_INDEX with TESTBED_SHARDS (Kubernetes), else the whole plan",
    ),
]
VariantOption = Annotated[list[str] | None, typer.Option(help="only this variant (repeatable)")]
RepeatOption = Annotated[
    int | None, typer.Option(min=1, max=100, help="repetitions per trial (default: the sweep's repeat)")
]


def _plan(
    scenario: Path, variant: list[str] | None, repeat: int | None, seed: int | None = None, listed: bool = False
) -> SweepPlan:
    """The scenario's sweep, every trial validated (the command's options over the section's)."""
    from testbed.scenario import load_scenario
    from testbed.sweep.plan import make_plan

    loaded = load_scenario(scenario)
    variants = check_variants(scenario, variant, loaded.variant_names) if variant else None
    return make_plan(loaded, variants=variants, repeat=repeat, seed=seed, shuffled=False if listed else None)


@app.command("run")
@reports_errors
def run(
    scenario: Annotated[Path, typer.Argument(help="scenario file with a sweep section")],
    shard: ShardOption = None,
    parallel: Annotated[
        int, typer.Option(min=1, max=16, help="runs at once, each in its own lab (lateness is flagged)")
    ] = 1,
    repeat: RepeatOption = None,
    seed: Annotated[int | None, typer.Option(min=0, help="the shuffle's seed (default: the sweep's, else new)")] = None,
    listed: Annotated[bool, typer.Option("--listed", help="run in listed order instead of shuffled")] = False,
    variant: VariantOption = None,
    out_dir_option: Annotated[
        Path | None, typer.Option("--out", help="output directory (default: results/<time>-<scenario>-sweep)")
    ] = None,
    no_pesq: Annotated[bool, typer.Option("--no-pesq", help="E-model only (scoring 50x faster)")] = False,
    impairment_engine: EngineOption = None,
    backend: BackendOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print sweep-result.json instead of the table")] = False,
) -> None:
    """Run a sweep (or one shard of it): every trial validated first, runs in shuffled order, each trial
    scored once every lab is down, statistics over repetitions. Exit 0 when it ran, 2 bad input, 4 failure."""
    require_root()
    from testbed.runner import default_out_dir
    from testbed.scoring.options import ScoringOptions
    from testbed.sweep.shard import run_shard, shard_from

    which = shard_from(shard)
    plan = _plan(scenario, variant, repeat, seed, listed)
    suffix = "sweep" if which.total == 1 else f"shard{which.index}of{which.total}"
    out_dir = out_dir_option or default_out_dir(f"{plan.loaded.scenario.name}-{suffix}")
    with warm_start(backend, parallel):
        collected = run_shard(
            plan,
            out_dir,
            which,
            parallel=parallel,
            backend=backend,
            impairment_engine=impairment_engine,
            scoring=ScoringOptions(pesq=not no_pesq),
            progress=progress_printer(),
        )
    _show(collected.result, out_dir, as_json)


@app.command("plan")
@reports_errors
def plan(
    scenario: Annotated[Path, typer.Argument(help="scenario file with a sweep section")],
    shards: Annotated[int, typer.Option(min=1, max=10000, help="show the assignment to this many shards")] = 1,
    repeat: RepeatOption = None,
    variant: VariantOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Validate every trial of a sweep and list them with their shard: nothing runs."""
    from testbed.sweep.plan import shard_of

    the_plan = _plan(scenario, variant, repeat)
    rows = [
        {"trial": t.id, "shard": shard_of(the_plan, t, shards), "parameters": t.parameters, "runs": the_plan.repeat}
        for t in the_plan.trials
    ]
    if as_json:
        print(json.dumps({"plan": the_plan.fingerprint, "trials": rows}, indent=1))
        return
    out.print(
        f"{scenario}: {len(rows)} trials x {the_plan.repeat} repetitions = {len(rows) * the_plan.repeat} runs, "
        f"plan {the_plan.fingerprint}, {shards} shard{'s' if shards > 1 else ''}",
        highlight=False,
        soft_wrap=True,
    )
    for trial in the_plan.trials:
        values = ", ".join(f"{k}={v}" for k, v in trial.parameters.items())
        out.print(f"  shard {shard_of(the_plan, trial, shards)}  {trial.id}: {values}", highlight=False)


@app.command("k8s-job")
@reports_errors
def k8s_job(
    scenario: Annotated[Path, typer.Argument(help="scenario file with a sweep section")],
    image: Annotated[str, typer.Option(help="the node image in your registry (testbed images build; push it)")],
    shards: Annotated[int, typer.Option(min=1, max=10000, help="Job completions: one shard each")] = 4,
    parallelism: Annotated[int, typer.Option(min=1, help="pods at once")] = 2,
    retries: Annotated[int, typer.Option(min=0, max=100, help="retries per shard (backoffLimitPerIndex)")] = 1,
    results_claim: Annotated[
        str, typer.Option(help="PersistentVolumeClaim (ReadWriteMany) the shards write to")
    ] = "testbed-results",
    name: Annotated[str | None, typer.Option(help="Job name (default: <scenario>-sweep)")] = None,
) -> None:
    """Print a Kubernetes Indexed Job (and the ConfigMap with the scenario) that runs the sweep's shards."""
    from testbed.sweep.k8s import job_manifest, to_yaml
    from testbed.sweep.packaging import scenario_files

    the_plan = _plan(scenario, None, None)
    files = scenario_files([the_plan.loaded, *the_plan.scenarios.values()])
    try:
        objects = job_manifest(
            name=name or _job_name(the_plan.loaded.scenario.name),
            scenario_name=scenario.stem,
            scenario_text=scenario.read_text(),
            templates=files,
            image=image,
            shards=shards,
            parallelism=min(parallelism, shards),
            retries=retries,
            results_claim=results_claim,
        )
    except ValueError as exc:
        raise InputError(f"k8s-job: {exc}") from None
    print(to_yaml(objects), end="")
    err.print(
        f"# {shards} shards of {len(the_plan.trials)} trials; afterwards: testbed merge <results>/*/shard-*",
        highlight=False,
    )


def _job_name(scenario: str) -> str:
    """A DNS label from the scenario's name: <name>-sweep."""
    base = re.sub(r"[^a-z0-9-]+", "-", scenario).strip("-")[:46]
    return base if base.endswith("sweep") else f"{base}-sweep"


@merge_app.command("merge")
@reports_errors
def merge(
    directories: Annotated[list[Path], typer.Argument(help="shard directories of one sweep")],
    out_dir_option: Annotated[
        Path | None, typer.Option("--out", help="where the merged result goes (default: results/<time>-<s>-merged)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print sweep-result.json instead of the table")] = False,
) -> None:
    """Join shards of one sweep: every statistic recomputed from their per-call rows; missing and duplicated
    trials listed. Exit 0 when every trial has results, 1 when some are missing (the merge of the rest is
    written), 2 shards of different plans."""
    from testbed.runner import default_out_dir
    from testbed.sweep.merge import merge as merge_shards
    from testbed.sweep.merge import read_shards

    first = read_shards(directories)[0]
    out_dir = out_dir_option or default_out_dir(f"{first.scenario}-merged")
    collected = merge_shards(directories, out_dir)
    _show(collected.result, out_dir, as_json)
    if collected.missing:
        err.print(f"incomplete: {len(collected.missing)} trials have no results", highlight=False)
        raise typer.Exit(ExitCode.FAILED)


def _show(result: SweepResult | None, out_dir: Path, as_json: bool) -> None:
    """The statistics as JSON, or the console table and where the files are."""
    from testbed.report.sweep_console import print_sweep

    assert result is not None
    if as_json:
        print(result.model_dump_json(indent=1))
        return
    print_sweep(result, out)
    out.print(f"report: {out_dir / 'sweep.html'}  (sweep-result.json, sweep-rows.jsonl)", highlight=False)
