"""A sweep's files: ``sweep.json`` (the plan and what one shard ran, where), ``trial.json`` (one trial's
parameter values) and ``sweep-result.json`` (statistics over repetitions, recomputed from per-call rows).

The repetition is the replicate: a trial's metric in one repetition is the median over that
repetition's call directions; the trial's figure is the median over repetitions with an
order-statistics interval (``testbed.sweep.stats``). Pure data: no lab, media or workload code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from testbed.results.base import Record, ResultFile

SWEEP_FILE = "sweep.json"
TRIAL_FILE = "trial.json"
SWEEP_RESULT_FILE = "sweep-result.json"
TRIALS_DIR = "trials"
VARIANT_AXIS = "variant"  # the variants are the sweep's axis of this name


class Axis(Record):
    path: str = Field(description="a parameter's path in the scenario (links.wan.router.rate), or 'variant'")
    values: list[Any]


class TrialInfo(ResultFile):
    """One trial: a point of the plan's cross product (the variant one of its coordinates)."""

    trial: str = Field(description="the trial's directory name under trials/")
    index: int = Field(description="its place in the plan's listed order (0-based): what shards split by")
    point: str = Field(description="the trial's coordinates without the variant: variants at one point compare")
    variant: str
    parameters: dict[str, Any] = Field(description="path -> value for every swept axis, the variant included")
    repetitions: int
    plan_fingerprint: str
    attempt: float | None = Field(
        None, description="the start of the shard attempt that wrote it (sweep.json's shard.started): merge skips stale"
    )


class ShardInfo(Record):
    index: int = Field(description="1-based")
    total: int
    host: str
    kernel: str
    python: str
    started: float
    finished: float | None = None
    seed: int | None = Field(description="the seed of the shuffled order (None: listed order)")
    order: list[str] = Field(description="the runs as they ran: TRIAL/RUN")
    parallel: int = Field(1, description="how many runs ran at once")
    source: str = Field("", description="where the shard came from: --shard, JOB_COMPLETION_INDEX, CI_NODE_INDEX")


class SweepFile(ResultFile):
    """``sweep.json``: the whole plan, and the one shard of it this directory holds."""

    scenario: str
    scenario_file: str
    plan_fingerprint: str = Field(description="the scenario, its router templates and the sweep, hashed")
    experiment_fingerprint: str
    axes: list[Axis]
    repeat: int
    trials: list[str] = Field(description="every trial of the plan, in listed order")
    shard: ShardInfo
    shard_trials: list[str] = Field(description="the trials this shard owns")


class Interval(Record):
    low: float
    high: float
    level: float = Field(description="the coverage the interval reaches (0.95 wanted; fewer repetitions reach less)")
    method: Literal["order statistics"] = "order statistics"


class MetricStats(Record):
    metric: str
    repetitions: list[float | None] = Field(description="per repetition: the median over its call directions")
    numbers: list[int] = Field(default_factory=list, description="which repetition each value is (pairing)")
    median: float | None
    interval: Interval | None = Field(description="of the median over repetitions; None with one repetition")
    p5: float | None = Field(description="5th percentile over every call direction of every repetition")
    directions: int = Field(description="call directions with a value, all repetitions")


class TrialStats(Record):
    trial: str
    point: str
    variant: str
    parameters: dict[str, Any]
    repetitions: int = Field(description="repetitions with results")
    metrics: dict[str, MetricStats]
    threshold: float = Field(description="the MOS E-model bar 'below' counts against")
    below: float | None = Field(description="share of call directions below the bar, all repetitions")
    harness_flagged: int = Field(0, description="repetitions whose harness fell behind (not network impairment)")
    passed: bool | None = Field(None, description="the trial's threshold checks all held (None: it has none)")
    host: list[str] = Field(default_factory=list)


class Comparison(Record):
    """One variant against another at the same point, paired by repetition."""

    point: str
    parameters: dict[str, Any] = Field(description="the point's coordinates, the variant left out")
    variant: str
    over: str
    metric: str
    differences: list[float] = Field(description="variant - over, per repetition both have")
    median: float | None
    interval: Interval | None
    wilcoxon_p: float | None = Field(description="two-sided signed-rank test of the paired differences")
    excludes_zero: bool = Field(False, description="the interval of the paired difference excludes 0 (at its level)")
    holds: bool = Field(description="it excludes 0 at 95% or more (6 repetitions or more)")
    disjoint: bool = Field(description="the two trials' intervals of the median do not overlap")


class SweepResult(ResultFile):
    scenario: str
    plan_fingerprint: str
    axes: list[Axis]
    repeat: int
    metrics: list[str]
    trials: list[TrialStats]
    comparisons: list[Comparison]
    shards: list[ShardInfo]
    missing: list[str] = Field(default_factory=list, description="trials of the plan no shard has results of")
    duplicated: list[str] = Field(default_factory=list, description="trials more than one shard ran (first kept)")
    parallel: int = Field(1, description="the most runs any shard ran at once")
