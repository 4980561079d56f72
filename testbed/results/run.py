"""``run.json`` (what ran, where) and ``result.json`` (the scored run, checked against the thresholds)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Self

from pydantic import Field, model_validator

from testbed.results.base import Record, ResultFile
from testbed.results.distribution import MosDistribution
from testbed.results.lab import EngineDescription
from testbed.results.scores import CallScores, mos_distribution
from testbed.results.workload import QueueSample, TimelineEntry

RUN_FILE = "run.json"
RESULT_FILE = "result.json"


class Host(Record):
    host: str
    kernel: str
    python: str


class VariantRunEntry(Record):
    name: str = Field(description="the directory: the variant, with -rN for repetition N > 1")
    variant: str
    repetition: int = 1


class RunInfo(ResultFile):
    """What a `testbed run` ran, in order, and on which machine (written before scoring)."""

    scenario: str
    scenario_file: str
    variants: list[str]
    runs: list[VariantRunEntry]
    host: str
    kernel: str
    python: str
    started: float | None
    software: dict[str, str] = Field(default_factory=dict, description="versions of the parts that made the calls")
    parallel: int = Field(1, description="how many variant runs ran at once (--parallel)")
    experiment: str | None = Field(
        None,
        description="the experiment's fingerprint: what a --baseline run must share (testbed.scenario.fingerprint)",
    )
    experiment_sections: dict[str, str] = Field(default_factory=dict, description="its digest per scenario section")
    trial: dict[str, Any] | None = Field(
        None, description="a sweep's trial: the values set in the scenario file's sweep (path -> value)"
    )


class ScenarioInfo(Record):
    name: str
    description: str
    file: str
    experiment: str | None = Field(None, description="the experiment's fingerprint (run.json's)")
    experiment_sections: dict[str, str] = Field(default_factory=dict)


NESTED = {"network", "playout", "per_second", "dscp", "model", "browser"}  # flattened or left out of rows


def _prefixed(prefix: str, record: Record | None, exclude: set[str] | None = None) -> dict[str, Any]:
    """A nested record's fields as flat ``prefix_field`` columns (none when the record is absent)."""
    if record is None:
        return {}
    return {f"{prefix}_{key}": value for key, value in record.model_dump(exclude=exclude).items()}


class Environment(Record):
    host: str = Field(description="where the calls ran")
    kernel: str
    python: str
    backend: list[str] = Field(description="node backends the variants used")
    impairment_engine: list[str]
    started: float | None
    scored_on: Host = Field(description="where scoring ran (differs after `testbed score` elsewhere)")
    parallel: int = Field(1, description="how many variant runs ran at once: lateness the harness shows is flagged")
    software: dict[str, str] = Field(
        default_factory=dict,
        description="aiortc, PyAV, Playwright, pesq on the harness's host; chromium: the browsers the calls ran",
    )


class TrafficSummary(Record):
    name: str
    kind: str
    from_: str = Field(alias="from")
    to: str
    started_at: float | None
    stopped_at: float | None
    bps: float | None
    wire_bps: float | None
    error: str
    per_second: list[dict[str, float | None]]


class Queues(Record):
    classes: dict[str, dict[str, dict[str, str]]]
    samples: list[QueueSample]


class HarnessLateness(Record):
    """How late the testbed's own timing-critical processes were: the impairment engines releasing
    packets and the call senders pacing them. Lateness here is the host's, not the network's; a variant
    whose lateness would show in its figures is flagged (see ``testbed.report.result.harness_lateness``)."""

    engine_late_p50_ms: float | None = Field(None, description="worst engine's median release lateness")
    engine_late_p99_ms: float | None = Field(description="worst engine's 99th percentile release lateness")
    engine_late_over_1ms: int = Field(description="packets released more than 1 ms late, all engines")
    pacing_p99_ms: float | None = Field(description="worst call side's 99th percentile sending lateness")
    light_pacing_p99_ms: float | None = Field(
        None, description="light (rtp) senders: the worst node's 99th percentile lateness, over all its streams"
    )
    tap_dropped: int = Field(0, description="packets the taps' kernel rings had no room for, all taps")
    flagged: bool
    note: str = ""


class VariantResult(Record):
    name: str
    variant: str
    repetition: int
    description: str
    router_template: str | None
    t0: float
    duration_s: float
    calls: list[CallScores]
    traffic: list[TrafficSummary]
    timeline: list[TimelineEntry]
    queues: Queues
    impairment_engine: EngineDescription | None
    agents: dict[str, dict[str, Any]]
    harness: HarnessLateness | None = None
    fault: str | None = Field(None, description="the testbed fault that stopped this variant's workload early")
    distribution: MosDistribution | None = Field(
        default=None,
        description="MOS over every call direction of this variant run, 'below_threshold' against the scenario's "
        "MOS E-model bar for the variant (filled in against the default bar when absent: older files)",
    )

    @model_validator(mode="after")
    def _fill_distribution(self) -> Self:
        if self.distribution is None:
            self.distribution = mos_distribution(self.calls)
        return self


class CheckResult(Record):
    """One threshold rule applied to one call direction, or, for a percentile rule, to all the matching
    directions of a variant (``call`` is then the rule's call or "all calls", ``direction`` "all
    directions", and ``directions`` how many the percentile is over)."""

    rule: str
    variant: str
    call: str
    direction: str
    value: float | None
    passed: bool
    message: str
    directions: int | None = Field(default=None, description="percentile rules: how many call directions it is over")


class Verdict(Record):
    passed: bool
    checks: int
    failed: int
    first_failure: str | None


class RunResult(ResultFile):
    schema_version: int = 2  # 2: environment.backend lists the backends used; scored_on added
    scenario: ScenarioInfo
    environment: Environment
    variants: list[VariantResult]
    thresholds: list[CheckResult]
    verdict: Verdict

    def call_rows(self) -> Iterator[dict[str, Any]]:
        """One flat row per call direction, self-describing (scenario, host, variant, repetition), so rows of
        runs from several machines can be concatenated and every statistic recomputed from them."""
        for variant in self.variants:
            for call in variant.calls:
                for label, direction in call.scored().items():
                    yield {
                        "scenario": self.scenario.name,
                        "host": self.environment.host,
                        "variant": variant.variant,
                        "run": variant.name,
                        "repetition": variant.repetition,
                        "call": call.id,
                        "direction": label,
                        "outcome": call.outcome,
                        "setup_s": call.setup_s,
                        **direction.model_dump(
                            exclude={"network", "playout", "per_second", "dscp", "model", "browser"}
                        ),
                        "marked_ef": direction.dscp.marked_ef if direction.dscp else None,
                        **_prefixed("model", direction.model),
                        **_prefixed("browser", direction.browser, exclude={"candidate_pair", "version"}),
                    }
