"""One run of a scenario: for each variant, build the lab, drive the workload, take the lab down.

Everything a variant produces lands in ``<out>/<variant>/`` (``workload.json``, per-call packet files,
taps' records and pcaps); the scoring and report steps read only those files.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.lab import Lab
from testbed.scenario.load import LoadedScenario
from testbed.workload import Workload, WorkloadResult

RESULTS = Path("results")


def default_out_dir(scenario_name: str, root: Path = RESULTS) -> Path:
    """``results/<YYYYmmdd-HHMMSS>-<scenario>``: sorts by time, says what ran."""
    return root / f"{time.strftime('%Y%m%d-%H%M%S')}-{scenario_name}"


@dataclass
class VariantRun:
    name: str  # the directory: the variant, with "-rN" for repetition N > 1 of --repeat
    variant: str
    repetition: int
    out_dir: Path
    workload: WorkloadResult
    lab: dict[str, Any]


@dataclass
class Run:
    scenario: str
    out_dir: Path
    variants: list[VariantRun] = field(default_factory=list)


def run_names(variants: list[str], repeat: int) -> list[tuple[str, str, int]]:
    """(directory name, variant, repetition) in the order they run: each repetition runs every variant."""
    return [
        (variant if repetition == 1 else f"{variant}-r{repetition}", variant, repetition)
        for repetition in range(1, repeat + 1)
        for variant in variants
    ]


def run_scenario(
    loaded: LoadedScenario,
    out_dir: Path,
    *,
    variants: list[str] | None = None,
    repeat: int = 1,
    impairment_engine: str | None = None,
    backend: str | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> Run:
    """Run the named variants (default: all), ``repeat`` times, one after the other; each gets a fresh lab."""
    names = run_names(variants or loaded.variant_names, repeat)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = Run(loaded.scenario.name, out_dir)
    for name, variant, repetition in names:
        scenario = loaded.variant(variant)
        variant_dir = out_dir / name
        progress(f"variant {name}: building the lab")
        with Lab(
            scenario,
            backend=backend,
            purpose=f"run {loaded.path} {name}",
            shared_dirs=[variant_dir],
            router_template=loaded.variant_templates[variant],
            impairment_engine=impairment_engine,
        ) as lab:
            description = lab.describe()
            progress(f"variant {name}: lab up in {lab.up_seconds * 1000:.0f} ms; running the workload")
            workload = Workload(
                lab,
                variant_dir,
                timeline_templates=loaded.timeline_templates,
                progress=lambda message, n=name: progress(f"variant {n}: {message}"),
            ).run()
        description["impairment_engine"]["stats"] = lab.engine_stats  # final counters, after teardown
        workload.save()
        (variant_dir / "lab.json").write_text(json.dumps(description, indent=1))
        run.variants.append(VariantRun(name, variant, repetition, variant_dir, workload, description))
    (out_dir / "run.json").write_text(
        json.dumps(
            {
                "scenario": loaded.scenario.name,
                "scenario_file": str(loaded.path.resolve()),
                "variants": [name for name, _, _ in names],
                "runs": [
                    {"name": name, "variant": variant, "repetition": repetition} for name, variant, repetition in names
                ],
                "host": platform.node(),
                "kernel": platform.release(),
                "python": platform.python_version(),
                "started": run.variants[0].workload.t0 if run.variants else None,
            },
            indent=1,
        )
    )
    return run


def finish(
    loaded: LoadedScenario,
    out_dir: Path,
    *,
    junit: Path | None = None,
    with_pesq: bool = True,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Score every variant of a run directory, check the thresholds, and write result.json, junit.xml and
    report.html. Works on a fresh run and on a stored one (``testbed score``)."""
    from testbed.report import html
    from testbed.report import junit as junit_report
    from testbed.report import result as result_file
    from testbed.report.thresholds import evaluate
    from testbed.rescore import score_variant

    info = json.loads((out_dir / "run.json").read_text())
    runs = info.get("runs") or [{"name": n, "variant": n, "repetition": 1} for n in info["variants"]]
    variants = []
    for entry in runs:
        variant_dir = out_dir / entry["name"]
        scores = score_variant(variant_dir, with_pesq=with_pesq, progress=progress)
        variants.append(
            {
                **entry,
                "scores": scores,
                "workload": json.loads((variant_dir / "workload.json").read_text()),
                "lab": json.loads((variant_dir / "lab.json").read_text()),
            }
        )
    by_variant: dict[str, dict[str, Any]] = {}
    for entry in variants:  # repetitions of a variant are checked together, each call as its own
        calls = by_variant.setdefault(entry["variant"], {"calls": []})["calls"]
        suffix = "" if entry["repetition"] == 1 else f"#{entry['repetition']}"
        calls += [{**call, "id": call["id"] + suffix} for call in entry["scores"]["calls"]]
    checks = evaluate(loaded.scenario.thresholds, by_variant)
    result = result_file.build(loaded, out_dir, variants, checks)
    result_file.save(result, out_dir)
    junit_report.write(result, out_dir / "junit.xml")
    if junit is not None:
        junit_report.write(result, junit)
    html.write(result, out_dir / "report.html")
    return result
