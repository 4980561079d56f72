"""The sweep's HTML report and console table, from hand-built results: offline (plotly beside the page, no
CDN), a figure per axis / variant / repetition box as promised, every trial in the tables, and a console
table that stays whole at 80 columns (rich cuts cells with '…' when it is not a terminal)."""

from __future__ import annotations

import io
import re
from itertools import product
from pathlib import Path
from typing import Any

from rich.console import Console

from testbed.report import sweep_console, sweep_html
from testbed.results.sweep import (
    Axis,
    Comparison,
    Interval,
    MetricStats,
    ShardInfo,
    SweepResult,
    TrialStats,
)

RATE = "links.wan.router.rate"
COUNT = "calls.0.count"
VARIANTS = ["fifo", "ef-priority"]
FIGURE_DIV = 'class="plotly-graph-div"'


def _stats(metric: str, values: list[float | None]) -> MetricStats:
    present = sorted(v for v in values if v is not None)
    median = present[len(present) // 2] if present else None
    interval = Interval(low=present[0], high=present[-1], level=0.75) if len(present) > 1 else None
    return MetricStats(
        metric=metric,
        repetitions=values,
        median=median,
        interval=interval,
        p5=present[0] if present else None,
        directions=2 * len(present),
    )


def _trial(index: int, parameters: dict[str, Any], repeat: int, pesq: bool = True) -> TrialStats:
    variant = parameters["variant"]
    base = 4.2 if variant == "ef-priority" else 1.5 + 0.15 * index
    emodel = [round(base + 0.01 * r, 2) for r in range(repeat)]
    metrics = {"mos_emodel": _stats("mos_emodel", list(emodel))}
    metrics["mos_pesq"] = _stats("mos_pesq", [v - 0.3 for v in emodel] if pesq else [None] * repeat)
    metrics["loss"] = _stats("loss", [None] * repeat)  # a metric no repetition measured
    point = ",".join(f"{k}={v}" for k, v in parameters.items() if k != "variant")
    return TrialStats(
        trial=f"t{index:02d}-{point.replace(',', '-')}-{variant}",
        point=point,
        variant=variant,
        parameters=parameters,
        repetitions=repeat,
        metrics=metrics,
        threshold=3.6,
        below=0.0 if variant == "ef-priority" else 0.5,
        harness_flagged=1 if index == 0 else 0,
        passed=None,
    )


def _result(axes: list[Axis], repeat: int, pesq: bool = True) -> SweepResult:
    swept = [axis for axis in axes if axis.path != "variant"]
    points = [dict(zip([a.path for a in swept], combo, strict=True)) for combo in product(*(a.values for a in swept))]
    trials = [
        _trial(index, {**point, "variant": variant}, repeat, pesq)
        for index, (point, variant) in enumerate(product(points, VARIANTS))
    ]
    comparisons = []
    by_point = {(trial.point, trial.variant): trial for trial in trials}
    for point, fifo in ((t.parameters, t) for t in trials if t.variant == "fifo"):
        ef = by_point[(fifo.point, "ef-priority")]
        point = {path: value for path, value in point.items() if path != "variant"}
        differences = [
            a - b
            for a, b in zip(ef.metrics["mos_emodel"].repetitions, fifo.metrics["mos_emodel"].repetitions, strict=True)
            if a is not None and b is not None
        ]
        comparisons.append(
            Comparison(
                point=ef.point,
                parameters=point,
                variant="ef-priority",
                over="fifo",
                metric="mos_emodel",
                differences=differences,
                median=sorted(differences)[len(differences) // 2],
                interval=Interval(low=min(differences), high=max(differences), level=0.75) if repeat > 1 else None,
                wilcoxon_p=0.25 if repeat > 1 else None,
                holds=repeat > 1,
                disjoint=repeat > 1,
            )
        )
    shard = ShardInfo(
        index=1,
        total=1,
        host="lab-1",
        kernel="6.8.0",
        python="3.11",
        started=0.0,
        seed=None,
        order=[],
        parallel=2,
        source="",
    )
    return SweepResult(
        scenario="office <wan>",
        plan_fingerprint="0123456789abcdef0123",
        axes=axes,
        repeat=repeat,
        metrics=["mos_emodel", "mos_pesq", "loss"],
        trials=trials,
        comparisons=comparisons,
        shards=[shard],
        missing=["t99-gone"],
        parallel=2,
    )


def _check_html(result: SweepResult, path: Path, figures: int) -> str:
    links = {result.trials[0].trial: "trials/first/report.html"}
    assert sweep_html.write(result, path, links) == path
    page = path.read_text()
    assert (path.parent / "plotly.min.js").stat().st_size > 1_000_000
    assert '<script src="plotly.min.js"></script>' in page
    assert "cdn" not in page.lower()
    assert page.count(FIGURE_DIV) == figures
    table = page[page.index("<h2>Trials</h2>") :]
    for trial in result.trials:
        assert f">{trial.trial}<" in table
    assert 'href="trials/first/report.html"' in page
    assert "office &lt;wan&gt;" in page and "<wan>" not in page
    assert "t99-gone" in page  # missing trials listed
    return page


def _check_console(result: SweepResult) -> str:
    """In a terminal of 80 columns the table fits (cells fold, none is cut); in a log (not a terminal)
    every trial is one whole row, however wide."""
    terminal = io.StringIO()
    sweep_console.print_sweep(result, Console(file=terminal, width=80, color_system=None, force_terminal=True))
    assert "…" not in terminal.getvalue()
    assert max(len(line) for line in terminal.getvalue().splitlines()) <= 80
    out = io.StringIO()
    sweep_console.print_sweep(result, Console(file=out, width=80, color_system=None))
    text = out.getvalue()
    assert "…" not in text
    rows = re.findall(r"^(.*?)\b(fifo|ef-priority) +(\d+) ", text, re.MULTILINE)  # a trial's row: variant, reps
    assert len(rows) == len(result.trials)
    for (values, variant, reps), trial in zip(rows, result.trials, strict=True):
        assert values.split() == [str(trial.parameters[path]) for path in trial.parameters if path != "variant"]
        assert (variant, int(reps)) == (trial.variant, trial.repetitions)
    assert sweep_console.INTERVAL_NOTE.split(";")[0] in text
    return text


def test_one_axis_and_variants(tmp_path: Path) -> None:
    rates = ["2mbit", "5mbit", "10mbit"]
    result = _result([Axis(path=RATE, values=rates), Axis(path="variant", values=VARIANTS)], repeat=3)
    # one MOS figure (the only axis, no other axes to split by) and the repetition boxes
    page = _check_html(result, tmp_path / "sweep.html", figures=2)
    assert "75% interval (3 repetitions)" in page
    assert "Wilcoxon" in page
    text = _check_console(result)
    assert "at rate=2mbit: ef-priority - fifo mos_emodel" in text and "holds" in text
    assert "[" in text and "harness" in text


def test_two_axes_draw_heatmaps(tmp_path: Path) -> None:
    axes = [
        Axis(path=RATE, values=["2mbit", "5mbit", "10mbit"]),
        Axis(path=COUNT, values=[1, 10, 50]),
        Axis(path="variant", values=VARIANTS),
    ]
    result = _result(axes, repeat=3)
    # MOS by rate per count (3) + by count per rate (3) + a heatmap per variant (2) + the boxes (1)
    page = _check_html(result, tmp_path / "out" / "sweep.html", figures=9)
    assert '"type":"heatmap"' in page
    text = _check_console(result)
    assert "rate" in text and "count" in text
    assert "at rate=2mbit, count=1:" in text


def test_many_combinations_are_capped(tmp_path: Path) -> None:
    axes = [
        Axis(path=RATE, values=["2mbit", "5mbit", "10mbit"]),
        Axis(path=COUNT, values=[1, 10, 50]),
        Axis(path="links.wan.delay", values=["10ms", "50ms"]),
        Axis(path="variant", values=VARIANTS),
    ]
    result = _result(axes, repeat=2)
    # rate: 6 of 6, count: 6 of 6, delay: 6 of 9 combinations, then the boxes; no heatmap with 3 axes
    page = _check_html(result, tmp_path / "sweep.html", figures=6 + 6 + 6 + 1)
    assert "the first 6 of 9 combinations" in page
    _check_console(result)


def test_one_repetition_and_variants_only(tmp_path: Path) -> None:
    result = _result([Axis(path="variant", values=VARIANTS)], repeat=1, pesq=False)
    assert all(t.metrics["mos_emodel"].interval is None for t in result.trials)
    page = _check_html(result, tmp_path / "sweep.html", figures=1)  # only the repetitions
    assert "interval (" not in page
    text = _check_console(result)
    assert "1 pair, no interval" in text and "does not hold" in text


def test_plotly_script_written_once(tmp_path: Path) -> None:
    result = _result([Axis(path=RATE, values=["2mbit"]), Axis(path="variant", values=VARIANTS)], repeat=3)
    sweep_html.write(result, tmp_path / "a.html")
    script = tmp_path / "plotly.min.js"
    before = script.stat().st_mtime_ns
    sweep_html.write(result, tmp_path / "b.html")
    assert script.stat().st_mtime_ns == before
