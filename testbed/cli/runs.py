"""``testbed run``, ``testbed score`` and ``testbed capacity``: experiments, their scores and limits."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from testbed.cli.common import (
    BackendOption,
    EngineOption,
    check_variants,
    err,
    live_view,
    out,
    preload_clips,
    progress_printer,
    reports_errors,
    require_root,
    warm_start,
)
from testbed.errors import ExitCode, InputError
from testbed.units import format_rate

if TYPE_CHECKING:
    from testbed.results import RunResult

app = typer.Typer()


@app.command()
@reports_errors
def run(
    scenario: Annotated[Path, typer.Argument(help="scenario file")],
    variant: Annotated[list[str] | None, typer.Option(help="run only this variant (repeatable)")] = None,
    repeat: Annotated[int, typer.Option(min=1, max=100, help="run every variant this many times")] = 1,
    out_dir_option: Annotated[
        Path | None, typer.Option("--out", help="output directory (default: results/<time>-<scenario>)")
    ] = None,
    junit: Annotated[Path | None, typer.Option(help="also write the JUnit XML here (for CI)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print result.json instead of the table")] = False,
    impairment_engine: EngineOption = None,
    backend: BackendOption = None,
    visqol: Annotated[
        bool, typer.Option("--visqol", help="ViSQOL beside PESQ (about 0.5 s of CPU per second of audio)")
    ] = False,
    parallel: Annotated[
        int, typer.Option(min=1, max=16, help="variant runs at once, each in its own lab (lateness is flagged)")
    ] = 1,
    baseline: Annotated[
        Path | None, typer.Option(help="a stored run of the same experiment: fail (exit 1) where MOS regressed")
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(min=0.0, max=4.0, help="--baseline: MOS drop allowed (default: 2x the baseline's spread)"),
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            help="while calls run: in a terminal, each direction's last second and the time left; in a log, "
            "a line every 10 s (not with --parallel)"
        ),
    ] = True,
) -> None:
    """Run a scenario: every variant's lab, calls, traffic and timeline; score, check thresholds, report.

    Exit 0 when every threshold holds, 1 when one fell short (see junit.xml), 2 bad input, 3 missing
    capability, 4 testbed failure.
    """
    require_root()
    with warm_start(backend, parallel):
        from testbed.scenario import load_scenario

        loaded = load_scenario(scenario)
        preload_clips(loaded.scenario)  # before the runner's imports: the first agents find them encoded
        from testbed.report.baseline import load_baseline
        from testbed.runner import Baseline, default_out_dir, run_scenario

        variants = check_variants(scenario, variant, loaded.variant_names)
        stored = Baseline(baseline, load_baseline(baseline, loaded), tolerance) if baseline is not None else None
        out_dir = out_dir_option or default_out_dir(loaded.scenario.name)
        progress = progress_printer()
        with live_view(live and parallel == 1, len(variants) * repeat) as monitor:
            run_scenario(
                loaded,
                out_dir,
                variants=variants,
                repeat=repeat,
                parallel=parallel,
                impairment_engine=impairment_engine,
                backend=backend,
                progress=progress,
                monitor=monitor,
            )
    from testbed.runner import finish
    from testbed.scoring.options import ScoringOptions

    progress("scoring")
    options = ScoringOptions(visqol=visqol)
    _report(finish(loaded, out_dir, junit=junit, progress=progress, options=options, baseline=stored), out_dir, as_json)


def _report(result: RunResult, out_dir: Path, as_json: bool) -> None:
    from testbed.report.console import print_summary

    if as_json:
        print(result.model_dump_json(indent=1, by_alias=True))
    else:
        print_summary(result, out)
        out.print(
            f"report: {out_dir / 'report.html'}  (result.json, junit.xml, audio/ and taps/ beside it)",
            highlight=False,
            soft_wrap=True,  # a path is never broken over two lines
        )
    faults = [f"{v.name}: {v.fault}" for v in result.variants if v.fault is not None]
    for fault in faults:
        err.print(f"[bold red]error:[/] the run stopped at a fault, {escape(fault)}", highlight=False, soft_wrap=True)
    if faults:
        raise typer.Exit(ExitCode.TESTBED_FAILED)
    if not result.verdict.passed:
        raise typer.Exit(ExitCode.FAILED)


@app.command()
@reports_errors
def capacity(
    scenario: Annotated[Path, typer.Argument(help="scenario file (its first call is multiplied)")],
    min_mos: Annotated[
        float, typer.Option(min=1.0, max=5.0, help="every call direction must score at least this")
    ] = 4.0,
    metric: Annotated[str, typer.Option(help="mos_emodel (fast) or mos_pesq")] = "mos_emodel",
    variant: Annotated[list[str] | None, typer.Option(help="only this variant (repeatable)")] = None,
    max_calls: Annotated[
        int, typer.Option(min=1, max=1000, help="search no higher than this (light rtp calls reach 500+)")
    ] = 1000,
    out_dir_option: Annotated[Path | None, typer.Option("--out", help="trial records (default: results/...)")] = None,
    impairment_engine: EngineOption = None,
    backend: BackendOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The largest number of concurrent calls each variant carries with every direction at --min-mos."""
    require_root()
    if metric not in ("mos_emodel", "mos_pesq"):
        raise InputError(f"--metric {metric!r}: use mos_emodel or mos_pesq")
    with warm_start(backend):
        from testbed.scenario import load_scenario

        loaded = load_scenario(scenario)
        preload_clips(loaded.scenario)
        from testbed.capacity import search
        from testbed.runner import default_out_dir

        names = check_variants(scenario, variant, loaded.variant_names)
        out_dir = out_dir_option or default_out_dir(f"{loaded.scenario.name}-capacity")
        progress = progress_printer()
        results = [
            search(
                loaded,
                name,
                out_dir,
                min_mos=min_mos,
                metric=metric,
                max_calls=max_calls,
                impairment_engine=impairment_engine,
                backend=backend,
                progress=progress,
            )
            for name in names
        ]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "capacity.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    if as_json:
        print(json.dumps([asdict(r) for r in results], indent=1))
        return
    table = Table(title=f"{loaded.scenario.name}: concurrent calls at {metric} >= {min_mos:g}")
    for column in ("variant", "calls", "per call", "link", "link holds", "trials"):
        table.add_column(column)
    for r in results:
        trials = ", ".join(f"{t.calls}{'+' if t.passed else '-'}" for t in r.trials)
        table.add_row(
            r.variant,
            f"{r.calls}{' (search limit)' if r.capped else ''}",
            f"{format_rate(r.call_bps)}" if r.call_bps else "-",
            format_rate(r.link_bps) if r.link_bps else "unshaped",
            str(r.theoretical) if r.theoretical is not None else "-",
            trials,
        )
    from testbed.report.console import print_whole

    print_whole(out, table)
    out.print(
        "per call: one direction on the wire (codec payload + RTP 12 + SRTP tag 10 + UDP 8 + IPv4 20 + Ethernet "
        "14 bytes, 50 packets/s); link holds: the slowest shaped link's rate / per call, with nothing else on it",
        highlight=False,
    )
    out.print(f"trial records in {out_dir}", highlight=False)


@app.command()
@reports_errors
def score(
    target: Annotated[str, typer.Argument(help="a run directory to re-score, or 'emodel' for the E-model alone")],
    ta_ms: Annotated[float | None, typer.Option(help="emodel: absolute mouth-to-ear delay Ta in ms")] = None,
    loss_pct: Annotated[float | None, typer.Option(help="emodel: packet loss Ppl in percent")] = None,
    burst_ratio: Annotated[float, typer.Option(help="emodel: BurstR (1 = random loss)")] = 1.0,
    codec: Annotated[
        str | None, typer.Option(help="emodel: codec whose Ie/Bpl to use (g711, g711-plc, opus, ...)")
    ] = None,
    ie: Annotated[float | None, typer.Option(help="emodel: equipment impairment Ie (with --bpl)")] = None,
    bpl: Annotated[float | None, typer.Option(help="emodel: packet-loss robustness Bpl (with --ie)")] = None,
    wideband: Annotated[bool, typer.Option("--wideband", help="emodel: G.107.1 wideband scale")] = False,
    no_pesq: Annotated[bool, typer.Option("--no-pesq", help="run directory: skip PESQ (faster)")] = False,
    no_fec: Annotated[
        bool, typer.Option("--no-fec", help="run directory: a receiver that ignores Opus' in-band FEC")
    ] = False,
    visqol: Annotated[
        bool, typer.Option("--visqol", help="run directory: ViSQOL beside PESQ (about 0.5 s of CPU per s of audio)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """`testbed score emodel --ta-ms TA --loss-pct PPL ...` prints R and MOS; `testbed score RUN_DIR`
    re-scores a stored run from its files and rewrites result.json, junit.xml and report.html."""
    if target == "emodel":
        _score_emodel(ta_ms, loss_pct, burst_ratio, codec, ie, bpl, wideband, as_json)
        return
    from testbed.api import score_run_dir
    from testbed.scoring.options import ScoringOptions

    run_dir = Path(target)
    result = score_run_dir(
        run_dir,
        scoring=ScoringOptions(pesq=not no_pesq, fec=not no_fec, visqol=visqol),
        progress=lambda message: err.print(message, highlight=False),
    )
    _report(result, run_dir, as_json)


def _score_emodel(
    ta_ms: float | None,
    loss_pct: float | None,
    burst_ratio: float,
    codec_name: str | None,
    ie: float | None,
    bpl: float | None,
    wideband: bool,
    as_json: bool,
) -> None:
    from testbed.scoring import emodel

    if ta_ms is None or loss_pct is None:
        raise InputError("score emodel needs --ta-ms (mouth-to-ear delay, ms) and --loss-pct (packet loss, %)")
    if codec_name is not None and (ie is not None or bpl is not None):
        raise InputError("give either --codec or --ie with --bpl, not both")
    if (ie is None) != (bpl is None):
        raise InputError("--ie and --bpl go together")
    if codec_name is not None:
        from testbed.codecs import emodel_params

        params = emodel_params(codec_name)
        ie, bpl, wideband = params.ie, params.bpl, params.wideband or wideband
    result = emodel.rating(
        emodel.EModelInput(
            ta=ta_ms,
            ppl=loss_pct,
            burst_r=burst_ratio,
            ie=ie or 0.0,
            bpl=bpl if bpl is not None else 1.0,
            wideband=wideband,
        )
    )
    if as_json:
        print(json.dumps({"r": round(result.r, 4), "mos": round(result.mos, 4)}))
        return
    scale = "G.107.1 wideband" if wideband else "G.107 narrowband"
    out.print(
        f"R = {result.r:.2f}, MOS = {result.mos:.3f} ({scale}; Ta {ta_ms:g} ms, Ppl {loss_pct:g}%, "
        f"BurstR {burst_ratio:g}, Ie {ie or 0:g}, Bpl {bpl if bpl is not None else 1:g})",
        highlight=False,
    )
    for warning in result.warnings:
        err.print(f"note: {warning}", highlight=False)
