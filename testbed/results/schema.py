"""JSON Schemas of the result files, published in ``docs/schemas/`` so other tools can read runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testbed.results.base import ResultFile
from testbed.results.lab import LabDescription
from testbed.results.run import RunInfo, RunResult
from testbed.results.scores import VariantScores
from testbed.results.sweep import SweepFile, SweepResult, TrialInfo
from testbed.results.workload import WorkloadRecord

SCHEMAS: dict[str, type[ResultFile]] = {
    "result": RunResult,
    "run": RunInfo,
    "workload": WorkloadRecord,
    "lab": LabDescription,
    "scores": VariantScores,
    "sweep": SweepFile,
    "trial": TrialInfo,
    "sweep-result": SweepResult,
}


def result_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one result file (a name of ``SCHEMAS``: ``result``, ``run``, ``sweep``, ...)."""
    model = SCHEMAS[name]
    schema = model.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"voip-testbed {name}.json (schema_version {model.model_fields['schema_version'].default})"
    return schema


def schema_file(directory: Path, name: str) -> Path:
    return directory / f"{name}.schema.json"
