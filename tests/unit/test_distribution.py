"""Runs of many calls: each variant's MOS as a distribution, percentile thresholds, and the console and
HTML views of a large run (pure, from hand-made scores)."""

from __future__ import annotations

import io
import math
import random
from xml.etree import ElementTree

import numpy as np
import pytest
from pydantic import ValidationError
from rich.console import Console

from testbed.errors import ScenarioError
from testbed.report import html, junit
from testbed.report.console import print_summary
from testbed.report.thresholds import describe, evaluate, mos_threshold
from testbed.results import CallScores, CheckResult, DirectionScores, RunResult, VariantScores
from testbed.results.distribution import DirectionMos, percentile, percentile_name, summarize
from testbed.results.scores import UnscoredDirection
from testbed.scenario import load_scenario
from testbed.scenario.thresholds import Threshold
from tests.helpers.scores import network_stats, run_result

UP, DOWN = "client->gateway", "gateway->client"


def scored(mos: float | None, pesq: float | None = None) -> DirectionScores:
    return DirectionScores.model_validate(
        {"codec": "opus", "wideband": True, "mos_emodel": mos, "mos_pesq": pesq, "network": network_stats()}
    )


def call(call_id: str, directions: dict[str, DirectionScores | UnscoredDirection], connected: bool = True):
    return CallScores(
        id=call_id,
        name=call_id.rsplit("-", 1)[0],
        outcome="connected" if connected else "failed",
        reason="" if connected else "not connected within the setup timeout of 10s",
        setup_s=0.1 if connected else None,
        codec="opus",
        dscp=46,
        directions=directions,
    )


def failed(call_id: str) -> CallScores:
    return call(call_id, {d: UnscoredDirection(note="never connected") for d in (UP, DOWN)}, connected=False)


def many(n: int, low: float, high: float, seed: int = 1) -> list[CallScores]:
    """``n`` calls of two directions, MOS spread evenly at random between ``low`` and ``high``."""
    rng = random.Random(seed)
    return [
        call(f"sales-{i}", {d: scored(rng.uniform(low, high), rng.uniform(low, high)) for d in (UP, DOWN)})
        for i in range(1, n + 1)
    ]


def rule(**data) -> Threshold:
    return Threshold.model_validate(data)


def run(variants: dict[str, list[CallScores]], checks: list[CheckResult] | None = None) -> RunResult:
    return run_result(variants, checks)


# --- the distribution


# 21 one-direction calls, MOS 1.0, 1.15, ... 4.0 in shuffled order; PESQ on every other one
KNOWN = [1.0 + 0.15 * k for k in range(21)]
ORDER = [7, 3, 20, 0, 15, 11, 1, 18, 5, 9, 13, 2, 19, 6, 16, 4, 10, 14, 8, 17, 12]


def known_calls() -> list[CallScores]:
    calls = [call(f"c-{k:02d}", {UP: scored(KNOWN[k], KNOWN[k] if k % 2 == 0 else None)}) for k in ORDER]
    return calls + [failed("c-lost"), call("c-mute", {UP: scored(4.0), DOWN: UnscoredDirection(note="nothing")})]


def test_percentile_is_numpys_linear_method():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    values = [float(v) for v in range(600)]
    assert percentile(values, 5) == pytest.approx(29.95)  # between the 30th and 31st smallest
    assert percentile(values, 0) == 0 and percentile(values, 100) == 599
    assert percentile(values, 37.5) == pytest.approx(float(np.percentile(values, 37.5)))
    with pytest.raises(ValueError):
        percentile([], 5)
    assert [percentile_name(q) for q in (0, 5, 50, 99.9, 100)] == ["minimum", "p5", "median", "p99.9", "maximum"]


def test_distribution_of_a_known_set():
    found = VariantScores(variant="v", calls=known_calls()).distribution
    assert found is not None
    assert found.directions == 22 and found.unscored == 3  # 21 + c-mute's scored direction; 2 failed + 1 mute
    assert found.unscored_calls == ["c-lost", "c-mute"]
    emodel = found.mos_emodel
    assert emodel is not None and emodel.count == 22
    values = sorted([*KNOWN, 4.0])
    assert emodel.median == pytest.approx(float(np.percentile(values, 50)), abs=1e-3) == pytest.approx(2.575)
    assert emodel.p5 == pytest.approx(1.0 + 0.15 * 1.05, abs=1e-3)  # position 0.05 * 21 = 1.05
    assert emodel.min == 1.0
    pesq = found.mos_pesq  # the 11 even k: 1.0, 1.3, ... 4.0
    assert pesq is not None and pesq.count == 11 and pesq.median == 2.5 and pesq.min == 1.0
    assert pesq.p5 == pytest.approx(1.15)  # halfway between 1.0 and 1.3
    assert found.threshold == 3.6 and "R 70" in found.threshold_source
    assert found.below_threshold == pytest.approx(round(18 / 22, 4))  # 1.0 .. 3.55
    assert [(w.call, w.direction, w.mos_emodel) for w in found.worst] == [
        (f"c-{k:02d}", UP, pytest.approx(KNOWN[k])) for k in range(5)
    ]


def test_distribution_against_a_threshold_and_without_values():
    rows = [DirectionMos("a", UP, 4.0), DirectionMos("b", UP, 3.99), DirectionMos("c", UP, 4.2)]
    found = summarize(rows, threshold=4.0, source="scenario")
    assert found.below_threshold == pytest.approx(0.3333) and found.threshold_source == "scenario"
    assert [w.call for w in found.worst] == ["b", "a", "c"]
    empty = summarize([DirectionMos("a", UP, None)])
    assert empty.directions == 0 and empty.unscored == 1 and empty.mos_emodel is None
    assert empty.below_threshold is None and empty.worst == []


def test_stored_scores_without_a_distribution_load_and_keep_it():
    data = VariantScores(variant="v", calls=known_calls()).model_dump(mode="json")
    del data["distribution"]  # a scores.json from before distributions
    loaded = VariantScores.model_validate(data)
    assert loaded.distribution is not None and loaded.distribution.directions == 22
    again = VariantScores.model_validate_json(loaded.model_dump_json())
    assert again.distribution == loaded.distribution


def test_result_variants_carry_a_distribution():
    result = RunResult.model_validate_json(run({"fifo": many(20, 1, 3)}).model_dump_json())
    found = result.variants[0].distribution
    assert found is not None and found.directions == 40


def test_the_distributions_bar_is_the_scenarios_mos_minimum_for_the_variant():
    rules = [
        rule(metric="mos_emodel", min=3.8),
        rule(metric="mos_emodel", min=4.1, variant="ef-priority"),
        rule(metric="mos_emodel", min=2.0, variant="ef-priority", over="fifo"),  # a gain: not a bar
        rule(metric="mos_emodel", min=4.4, variant="ef-priority", call="ceo"),  # one call: not the variant's
        rule(metric="mos_pesq", min=4.3, variant="ef-priority"),
    ]
    assert mos_threshold(rules, "ef-priority") == (4.1, "scenario threshold: mos_emodel >= 4.1 in variant ef-priority")
    assert mos_threshold(rules, "fifo")[0] == 3.8
    assert mos_threshold(rules[2:], "fifo")[0] == 3.6
    assert mos_threshold([rule(metric="mos_emodel", percentile=5, min=4.0)], "fifo")[0] == 4.0


# --- percentile thresholds


BIG = {"fifo": many(300, 1.0, 3.0), "ef-priority": many(300, 4.0, 4.4)}


def test_a_percentile_rule_is_one_check_per_variant_naming_percentile_value_and_count():
    checks = evaluate([rule(metric="mos_emodel", percentile=5, min=4.0)], BIG)
    assert [(c.variant, c.passed, c.directions) for c in checks] == [("fifo", False, 600), ("ef-priority", True, 600)]
    values = [s.mos_emodel for c in BIG["ef-priority"] for s in c.scored().values()]
    expected = float(np.percentile(values, 5))
    ok = checks[1]
    assert ok.value == pytest.approx(expected, abs=1e-3)
    assert ok.message == f"ef-priority: p5 of mos_emodel {expected:.3g} over 600 directions (ok)"
    assert ok.rule == "p5 of mos_emodel >= 4" and (ok.call, ok.direction) == ("all calls", "all directions")
    assert checks[0].message.startswith("fifo: p5 of mos_emodel 1.")
    assert checks[0].message.endswith("over 600 directions (needs >= 4)")


def test_a_median_bound_and_a_call_filter():
    variants = {"v": [*many(10, 4.0, 4.4), call("ceo-1", {UP: scored(2.0), DOWN: scored(2.2)})]}
    median = evaluate([rule(metric="mos_emodel", percentile=50, min=3.5, variant="v")], variants)
    assert len(median) == 1 and median[0].passed and median[0].message.startswith("v: median of mos_emodel")
    ceo = evaluate([rule(metric="mos_emodel", percentile=50, min=3.5, variant="v", call="ceo")], variants)
    assert not ceo[0].passed and ceo[0].value == pytest.approx(2.1)
    assert ceo[0].message == "v / ceo: median of mos_emodel 2.1 over 2 directions (needs >= 3.5 in variant v, call ceo)"
    assert describe(rule(metric="loss", percentile=99, max=1)) == "p99 of loss <= 1%"


def test_failed_calls_count_as_mos_1_and_missing_values_are_said():
    variants = {"v": [*many(9, 4.2, 4.4), failed("sales-10")]}
    minimum = evaluate([rule(metric="mos_emodel", percentile=0, min=4.0)], variants)[0]
    assert not minimum.passed and minimum.value == 1.0 and minimum.directions == 20
    assert "minimum of mos_emodel 1 over 20 directions" in minimum.message
    loss = evaluate([rule(metric="loss", percentile=95, max=1.0)], variants)[0]
    assert loss.passed and "over 18 directions, 2 without a value left out (ok)" in loss.message
    nothing = evaluate([rule(metric="loss", percentile=95, max=1.0)], {"v": [failed("a-1")]})[0]
    assert not nothing.passed and nothing.value is None and "no loss values" in nothing.message


def test_a_percentile_of_gains_pairs_each_call_direction():
    base = many(50, 1.0, 2.0, seed=2)
    better = [
        c.model_copy(update={"directions": {d: scored(s.mos_emodel + 2.0) for d, s in c.scored().items()}})
        for c in base
    ]
    variants = {"fifo": base, "ef": better}
    check = evaluate([rule(metric="mos_emodel", percentile=5, min=1.5, variant="ef", over="fifo")], variants)[0]
    assert check.passed and check.value == pytest.approx(2.0) and check.directions == 100
    assert check.message == "ef: p5 of mos_emodel gain vs fifo +2 over 100 directions (ok)"
    assert check.rule == "p5 of mos_emodel gain of ef over fifo >= 1.5"


@pytest.mark.parametrize("bad", [-1, 100.5, 150, math.nan, math.inf])
def test_a_percentile_out_of_range_is_refused_naming_the_field(bad):
    with pytest.raises(ValidationError, match="percentile .* out of range; allowed: 0 to 100") as caught:
        rule(metric="mos_emodel", percentile=bad, min=4.0)
    assert caught.value.errors()[0]["loc"] == ("percentile",)


def test_a_scenario_with_a_bad_percentile_gives_one_located_line(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\n"
        "thresholds:\n"
        "  - {metric: mos_emodel, percentile: 5, min: 4.0}\n"
        "  - {metric: mos_emodel, percentile: 150, min: 4.0}\n"
    )
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.problems == [
        f"{path}:4: thresholds[1].percentile: percentile 150 is out of range; allowed: 0 to 100 "
        "(0 = minimum, 50 = median)"
    ]
    good = tmp_path / "good.yaml"
    good.write_text("name: p\nthresholds:\n  - {metric: mos_emodel, percentile: 5, min: 4.0}\n")
    assert load_scenario(good).scenario.thresholds[0].percentile == 5


# --- console and HTML of a large run


def large_run() -> RunResult:
    variants = {**BIG, "fifo": [*BIG["fifo"], failed("sales-301")]}
    rules = [rule(metric="mos_emodel", percentile=5, min=4.0), rule(metric="mos_emodel", min=3.0)]
    return run(variants, evaluate(rules, variants))


def console_text(result: RunResult) -> str:
    out = io.StringIO()
    print_summary(result, Console(file=out, width=80))
    return out.getvalue()


def test_console_prints_a_large_run_as_distributions_in_80_columns():
    output = console_text(large_run())
    lines = output.splitlines()
    assert len(lines) < 40, output
    assert max(len(line) for line in lines) <= 80 and "…" not in output  # whole cells
    table = output[: output.index("lowest MOS E-model call directions")].splitlines()
    rows = {line.split()[0]: line.split() for line in table if line.split()[:1] in (["fifo"], ["ef-priority"])}
    result = large_run()
    for variant in result.variants:
        found = variant.distribution
        assert found is not None and found.mos_emodel is not None and found.worst
        row = rows[variant.name]
        assert row[1] == "600" and row[2:5] == [
            f"{v:.2f}" for v in (found.mos_emodel.median, found.mos_emodel.p5, found.mos_emodel.min)
        ]
        assert row[-2:] == [found.worst[0].call, f"{found.worst[0].mos_emodel:.2f}"]
    assert "the 5 lowest MOS E-model call directions of the run" in output
    assert "fifo: 2 call directions without a MOS (calls: sales-301)" in output
    assert "ef-priority: p5 of mos_emodel" not in output  # passed; failures are listed, up to 10
    assert "x fifo: p5 of mos_emodel 1." in output


def test_a_small_run_keeps_a_row_per_direction():
    output = console_text(run({"v": many(6, 4.0, 4.4)}))
    assert "calls per variant and direction" in output and "MOS over each variant" not in output
    assert sum(line.startswith("v ") for line in output.splitlines()) == 12


def test_html_of_a_large_run_has_the_cdf_and_worst_calls():
    page = html.render(large_run())
    assert "<h2>Distribution</h2>" in page and "MOS E-model over the call directions" in page
    section = page[page.index("<h2>Distribution</h2>") : page.index("<h2>Calls</h2>")]
    assert section.count('class="plotly-graph-div"') == 1
    assert "fifo (600)" in section and "ef-priority (600)" in section
    assert section.count("<h3>fifo: the 5 worst of 600 directions</h3>") == 1
    assert "sales-301" in section  # the call that never connected is named
    plotted = page[page.index("<h2>Per second</h2>") :].count("<h3>")
    assert 0 < plotted <= 10  # the worst directions only, not 1202 plot groups


def test_html_of_a_small_run_has_no_distribution_section():
    page = html.render(run({"v": many(6, 4.0, 4.4)}))
    assert "<h2>Distribution</h2>" not in page and page.count("<h3>sales-") == 12


def test_junit_has_one_case_per_percentile_rule_and_variant(tmp_path):
    root = ElementTree.parse(junit.write(large_run(), tmp_path / "junit.xml")).getroot()
    names = [case.get("name") for suite in root for case in suite if "p5" in (case.get("name") or "")]
    assert names == ["all calls all directions: p5 of mos_emodel >= 4"] * 2
