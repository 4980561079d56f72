"""``testbed validate`` and ``testbed schema``: the file formats, checked and published."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from testbed.cli.common import out, reports_errors
from testbed.errors import InputError, ScenarioError

app = typer.Typer()


@app.command()
@reports_errors
def validate(files: Annotated[list[Path], typer.Argument(help="scenario files")]) -> None:
    """Check scenario files and the router templates they name; print one line per problem."""
    from testbed.scenario import load_scenario

    problems: list[str] = []
    for path in files:
        try:
            loaded = load_scenario(path)
        except ScenarioError as exc:
            problems.extend(exc.problems)
            continue
        scenario = loaded.scenario
        out.print(
            f"[green]ok[/] {path}: {scenario.name}, {len(scenario.topology.nodes)} nodes, "
            f"variants: {', '.join(loaded.variant_names)}",
            highlight=False,
        )
    if problems:
        raise ScenarioError(problems)


@app.command()
@reports_errors
def schema(
    router_template: Annotated[bool, typer.Option("--router-template", help="the router template format")] = False,
    results: Annotated[
        str | None,
        typer.Option(
            "--results", help="a result file's format: result, run, workload, lab, scores, sweep, trial or sweep-result"
        ),
    ] = None,
) -> None:
    """Print the JSON Schema of scenario files (or router templates, or a result file) for editors and CI."""
    from testbed.results.schema import SCHEMAS, result_schema
    from testbed.scenario.schema import router_template_schema, scenario_schema

    if results is not None:
        if results not in SCHEMAS:
            raise InputError(f"--results {results!r}: use one of {', '.join(SCHEMAS)}")
        print(json.dumps(result_schema(results), indent=2))
    else:
        print(json.dumps(router_template_schema() if router_template else scenario_schema(), indent=2))
