"""Typed result files: every file a run writes is a pydantic model with a schema version and a published
JSON Schema (``testbed schema --results``). Pure data: no lab, media or workload code."""

from testbed.results.lab import LAB_FILE, LabDescription
from testbed.results.metrics import METRICS, UNITS, metric
from testbed.results.run import RESULT_FILE, RUN_FILE, CheckResult, RunInfo, RunResult, VariantResult
from testbed.results.scores import SCORES_FILE, CallScores, DirectionScores, VariantScores
from testbed.results.workload import WORKLOAD_FILE, CallRecord, LegSummary, TrafficRecord, WorkloadRecord

__all__ = [
    "LAB_FILE",
    "METRICS",
    "RESULT_FILE",
    "RUN_FILE",
    "SCORES_FILE",
    "UNITS",
    "WORKLOAD_FILE",
    "CallRecord",
    "CallScores",
    "CheckResult",
    "DirectionScores",
    "LabDescription",
    "LegSummary",
    "RunInfo",
    "RunResult",
    "TrafficRecord",
    "VariantResult",
    "VariantScores",
    "WorkloadRecord",
    "metric",
]
