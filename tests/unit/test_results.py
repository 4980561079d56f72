"""The typed result files: published schemas match the models, damaged files are bad input with their
path, per-call rows are flat and self-describing, and harness lateness is flagged."""

from __future__ import annotations

import json

import pytest

from testbed.errors import InputError
from testbed.report.result import ScoredVariant, build, harness_lateness
from testbed.results import CallScores, DirectionScores, LabDescription, RunInfo, VariantScores, WorkloadRecord
from testbed.results.schema import SCHEMAS, result_schema, schema_file
from testbed.scenario import load_scenario
from tests.helpers import REPO


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_published_schemas_are_current(name):
    published = json.loads(schema_file(REPO / "docs" / "schemas", name).read_text())
    assert published == result_schema(name), f"regenerate with `testbed schema --results {name}`"


def test_a_damaged_file_is_bad_input_naming_path_and_field(tmp_path):
    path = tmp_path / "lab.json"
    path.write_text('{"scenario": "x"}')
    with pytest.raises(InputError, match=r"lab.json: backend: Field required"):
        LabDescription.load(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match=r"lab.json:1: not JSON"):
        LabDescription.load(path)


def variant(
    engine_p99: float | None,
    pacing_p99: float | None,
    engine_p50: float = 0.02,
    name: str = "v",
    calls: list[CallScores] | None = None,
) -> ScoredVariant:
    stats = {}
    if engine_p99 is not None:
        stats = {"wan@router": {"late_p50_ms": engine_p50, "late_p99_ms": engine_p99, "late_over_1ms": 3}}
    lab = LabDescription.model_validate(
        {
            "scenario": "s",
            "backend": "netns",
            "router": None,
            "impairment_engine": {"choice": "auto", "kernel_netem": False, "stats": stats},
            "nodes": {},
        }
    )
    leg = {"call": "c", "codec": "opus", "dscp": 46, "clip": "client"}
    if pacing_p99 is not None:
        leg["pacing"] = {"p50_ms": 0.1, "p99_ms": pacing_p99, "max_ms": pacing_p99}
    call = {
        "id": "c",
        "name": "c",
        "caller": "client",
        "callee": "gateway",
        "codec": "opus",
        "dscp": 46,
        "start": 0,
        "duration": 5,
        "setup_timeout": 10,
        "sides": {"caller": leg},
    }
    workload = WorkloadRecord.model_validate(
        {
            "t0": 0,
            "duration": 5,
            "calls": [call],
            "traffic": [],
            "timeline": [],
            "taps": {},
            "queues": [],
            "queue_classes": {},
            "engines": {},
            "agents": {},
            "out_dir": "x",
        }
    )
    return ScoredVariant(name, name, 1, workload, lab, VariantScores(variant=name, calls=calls or []))


def test_harness_lateness_is_flagged_when_it_would_show_in_the_figures():
    calm = harness_lateness(variant(2.5, 2.1))  # the office demo on 2 loaded cores: timer granularity
    assert not calm.flagged and calm.engine_late_p99_ms == 2.5 and calm.pacing_p99_ms == 2.1
    shifted = harness_lateness(variant(2.5, 0.4, engine_p50=2.2))  # every delay 2 ms too long
    assert shifted.flagged and "impairment engine median 2.20 ms" in shifted.note
    tail = harness_lateness(variant(8.0, 0.4))
    assert tail.flagged and "impairment engine p99 8.00 ms" in tail.note and tail.engine_late_over_1ms == 3
    late_sender = harness_lateness(variant(None, 6.0))
    assert late_sender.flagged and "call senders p99 6.00 ms" in late_sender.note
    unmeasured = harness_lateness(variant(None, None))  # no engine, no pacing figures: nothing to flag
    assert not unmeasured.flagged and unmeasured.engine_late_p99_ms is None and unmeasured.pacing_p99_ms is None


def test_each_variants_distribution_counts_below_the_scenarios_bar():
    """office.yaml asks MOS E-model >= 4.0 of ef-priority; fifo has no such rule: 3.6 (R 70)."""
    loaded = load_scenario(REPO / "scenarios" / "office.yaml")
    directions = {
        label: DirectionScores(codec="opus", wideband=True, mos_emodel=mos)
        for label, mos in (("a->b", 3.8), ("b->a", 4.2))
    }
    scores = [
        CallScores(
            id="c", name="c", outcome="connected", reason="", setup_s=0.1, codec="opus", dscp=46, directions=directions
        )
    ]
    info = RunInfo(
        scenario="office",
        scenario_file="office.yaml",
        variants=[],
        runs=[],
        host="h",
        kernel="k",
        python="3",
        started=None,
    )
    result = build(loaded, info, [variant(None, None, name=n, calls=scores) for n in ("fifo", "ef-priority")], [])
    bars = {v.name: v.distribution for v in result.variants}
    fifo, ef = bars["fifo"], bars["ef-priority"]
    assert fifo is not None and fifo.threshold == 3.6 and fifo.below_threshold == 0
    assert ef is not None and ef.threshold == 4.0 and ef.below_threshold == 0.5
    assert ef.threshold_source == "scenario threshold: mos_emodel >= 4 in variant ef-priority"
