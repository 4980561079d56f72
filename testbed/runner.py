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
    variant: str
    out_dir: Path
    workload: WorkloadResult
    lab: dict[str, Any]


@dataclass
class Run:
    scenario: str
    out_dir: Path
    variants: list[VariantRun] = field(default_factory=list)


def run_scenario(loaded: LoadedScenario, out_dir: Path, *, variants: list[str] | None = None,
                 impairment_engine: str | None = None, backend: str | None = None,
                 progress: Callable[[str], None] = lambda message: None) -> Run:
    """Run the named variants (default: all) one after the other; each gets a fresh lab."""
    names = variants or loaded.variant_names
    out_dir.mkdir(parents=True, exist_ok=True)
    run = Run(loaded.scenario.name, out_dir)
    for name in names:
        scenario = loaded.variant(name)
        variant_dir = out_dir / name
        progress(f"variant {name}: building the lab")
        with Lab(scenario, backend=backend, purpose=f"run {loaded.path} {name}",
                 router_template=loaded.variant_templates[name], impairment_engine=impairment_engine) as lab:
            description = lab.describe()
            progress(f"variant {name}: lab up in {lab.up_seconds * 1000:.0f} ms; running the workload")
            workload = Workload(lab, variant_dir, timeline_templates=loaded.timeline_templates,
                                progress=lambda message, n=name: progress(f"variant {n}: {message}")).run()
        description["impairment_engine"]["stats"] = lab.engine_stats  # final counters, after teardown
        workload.save()
        (variant_dir / "lab.json").write_text(json.dumps(description, indent=1))
        run.variants.append(VariantRun(name, variant_dir, workload, description))
    (out_dir / "run.json").write_text(json.dumps({
        "scenario": loaded.scenario.name, "scenario_file": str(loaded.path), "variants": names,
        "host": platform.node(), "kernel": platform.release(), "python": platform.python_version(),
        "started": run.variants[0].workload.t0 if run.variants else None,
    }, indent=1))
    return run
