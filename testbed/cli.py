"""The ``testbed`` command. Exit codes: 0 ok, 1 check or thresholds failed, 2 bad input,
3 missing capability, 4 the testbed itself failed, 130 interrupted."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from testbed.errors import CapabilityError, InputError, TestbedError

if TYPE_CHECKING:
    from testbed.results import RunResult

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Emulated network testbed: does a router's QoS design keep VoIP calls good?",
)
images_app = typer.Typer(help="Node images for the docker backend.", no_args_is_help=True)
lab_app = typer.Typer(no_args_is_help=True, help="Bring a scenario's network up, use it, take it down.")
app.add_typer(lab_app, name="lab")
images_app = typer.Typer(no_args_is_help=True, help="Node images for the docker backend.")
app.add_typer(images_app, name="images")

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(command: F) -> F:
    """Turn the testbed's exceptions into a one-line message and the documented exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TestbedError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]; everything this command created was removed")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug or an environment failure: one line, exit 4, details on request
            err.print(
                f"[bold red]error:[/] {escape(type(exc).__name__)}: {escape(str(exc))} "
                "(the testbed failed; run with TESTBED_DEBUG=1 for a traceback)",
                highlight=False,
                soft_wrap=True,
            )
            if os.environ.get("TESTBED_DEBUG"):
                raise
            raise typer.Exit(4) from None

    return wrapper  # type: ignore[return-value]


def _registry():
    from testbed.lab.registry import Registry

    return Registry()


ENGINE_OPTION = Annotated[
    str | None,
    typer.Option(
        "--impairment-engine", help="auto (netem where the kernel has it), netem or userspace; overrides the scenario"
    ),
]


def _load(path: Path, variant: str | None):
    from testbed.scenario import load_scenario

    loaded = load_scenario(path)
    name = variant or loaded.variant_names[0]
    return loaded, loaded.variant(name), name


# ------------------------------------------------------------------ validate / schema


@app.command()
@reports_errors
def validate(files: Annotated[list[Path], typer.Argument(help="scenario files")]) -> None:
    """Check scenario files and the router templates they name; print one line per problem."""
    from testbed.errors import ScenarioError
    from testbed.scenario import load_scenario

    problems: list[str] = []
    for path in files:
        try:
            loaded = load_scenario(path)
        except ScenarioError as exc:
            problems.extend(exc.problems)
            continue
        scenario = loaded.scenario
        out.print(
            f"[green]ok[/] {path}: {scenario.name}, {len(scenario.topology.nodes)} nodes, "
            f"variants: {', '.join(loaded.variant_names)}",
            highlight=False,
        )
    if problems:
        from testbed.errors import ScenarioError

        raise ScenarioError(problems)


@app.command()
@reports_errors
def schema(
    router_template: Annotated[bool, typer.Option("--router-template", help="the router template format")] = False,
    results: Annotated[
        str | None, typer.Option("--results", help="a result file's format: result, run, workload, lab or scores")
    ] = None,
) -> None:
    """Print the JSON Schema of scenario files (or router templates, or a result file) for editors and CI."""
    from testbed.results.schema import SCHEMAS, result_schema
    from testbed.scenario.schema import router_template_schema, scenario_schema

    if results is not None:
        if results not in SCHEMAS:
            raise InputError(f"--results {results!r}: use one of {', '.join(SCHEMAS)}")
        print(json.dumps(result_schema(results), indent=2))
    else:
        print(json.dumps(router_template_schema() if router_template else scenario_schema(), indent=2))


# ------------------------------------------------------------------ doctor / cleanup


@app.command()
@reports_errors
def doctor(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Say what this host can do and, for each missing capability, what it disables and how to get it."""
    from testbed.lab.probe import ESSENTIAL, has, impairment_engine, probe

    capabilities = probe(_registry())
    missing_essential = [name for name in ESSENTIAL if not has(capabilities, name)]
    engine = impairment_engine(capabilities)
    engine_text = {
        "netem": "kernel netem (sch_netem is here)",
        "userspace": "the userspace NFQUEUE engine (this kernel has no sch_netem)",
        None: "none: links can be rate-limited, not delayed or made lossy",
    }[engine]
    netem_tests = _netem_test_location(has(capabilities, "netem"))
    if as_json:
        print(
            json.dumps(
                {
                    "capabilities": [c.as_dict() for c in capabilities],
                    "impairment_engine": engine,
                    "netem_tests": netem_tests,
                    "ready": not missing_essential,
                },
                indent=2,
            )
        )
    else:
        table = Table(title="testbed doctor", show_lines=False)
        for column in ("capability", "status", "detail", "without it", "how to get it"):
            table.add_column(column, overflow="fold")
        for c in capabilities:
            table.add_row(
                c.name,
                "[green]yes[/]" if c.available else "[red]no[/]",
                c.detail,
                "" if c.available else c.disables,
                "" if c.available else c.remedy,
            )
        out.print(table)
        out.print(f"delay/loss (impairment_engine: auto): {engine_text}", highlight=False)
        out.print(f"netem tests: {netem_tests}", highlight=False)
        if missing_essential:
            out.print(f"[red]not ready:[/] missing {', '.join(missing_essential)}")
        else:
            out.print("[green]ready[/] to build labs")
    if missing_essential:
        raise typer.Exit(CapabilityError.exit_code)


def _netem_test_location(native: bool) -> str:
    """Where tests marked netem run: natively, or in a stock-kernel VM (tests/netem)."""
    if native:
        return "native (this kernel has sch_netem)"
    try:
        from testbed.lab.netemvm import netem_status
    except ImportError:
        return "no sch_netem here and no VM support installed"
    return netem_status()


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
    impairment_engine: ENGINE_OPTION = None,
    backend: Annotated[str | None, typer.Option(help="netns (default) or docker")] = None,
) -> None:
    """Run a scenario: every variant's lab, calls, traffic and timeline; score, check thresholds, report.

    Exit 0 when every threshold holds, 1 when one fell short (see junit.xml), 2 bad input, 3 missing
    capability, 4 testbed failure.
    """
    _require_root()
    from testbed.runner import default_out_dir, finish, run_scenario
    from testbed.scenario import load_scenario

    loaded = load_scenario(scenario)
    for name in variant or []:
        if name not in loaded.variant_names:
            raise InputError(f"{scenario}: no variant {name!r} (variants: {', '.join(loaded.variant_names)})")
    out_dir = out_dir_option or default_out_dir(loaded.scenario.name)
    started = time.monotonic()

    def progress(message: str) -> None:
        err.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {message}", highlight=False)

    run_scenario(
        loaded,
        out_dir,
        variants=variant,
        repeat=repeat,
        impairment_engine=impairment_engine,
        backend=backend,
        progress=progress,
    )
    progress("scoring")
    result = finish(loaded, out_dir, junit=junit, progress=progress)
    _report(result, out_dir, as_json)


def _report(result: RunResult, out_dir: Path, as_json: bool) -> None:
    from testbed.report.console import print_summary

    if as_json:
        print(result.model_dump_json(indent=1, by_alias=True))
    else:
        print_summary(result, out)
        out.print(
            f"report: {out_dir / 'report.html'}  (result.json, junit.xml, audio/ and taps/ beside it)", highlight=False
        )
    if not result.verdict.passed:
        raise typer.Exit(1)


@app.command()
@reports_errors
def capacity(
    scenario: Annotated[Path, typer.Argument(help="scenario file (its first call is multiplied)")],
    min_mos: Annotated[
        float, typer.Option(min=1.0, max=5.0, help="every call direction must score at least this")
    ] = 4.0,
    metric: Annotated[str, typer.Option(help="mos_emodel (fast) or mos_pesq")] = "mos_emodel",
    variant: Annotated[list[str] | None, typer.Option(help="only this variant (repeatable)")] = None,
    max_calls: Annotated[int, typer.Option(min=1, max=200, help="search no higher than this")] = 64,
    out_dir_option: Annotated[Path | None, typer.Option("--out", help="trial records (default: results/...)")] = None,
    impairment_engine: ENGINE_OPTION = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The largest number of concurrent calls each variant carries with every direction at --min-mos."""
    _require_root()
    from dataclasses import asdict

    from testbed.capacity import search
    from testbed.runner import default_out_dir
    from testbed.scenario import load_scenario

    if metric not in ("mos_emodel", "mos_pesq"):
        raise InputError(f"--metric {metric!r}: use mos_emodel or mos_pesq")
    loaded = load_scenario(scenario)
    names = variant or loaded.variant_names
    for name in names:
        if name not in loaded.variant_names:
            raise InputError(f"{scenario}: no variant {name!r} (variants: {', '.join(loaded.variant_names)})")
    out_dir = out_dir_option or default_out_dir(f"{loaded.scenario.name}-capacity")
    started = time.monotonic()
    results = [
        search(
            loaded,
            name,
            out_dir,
            min_mos=min_mos,
            metric=metric,
            max_calls=max_calls,
            impairment_engine=impairment_engine,
            progress=lambda m: err.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {m}", highlight=False),
        )
        for name in names
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "capacity.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    if as_json:
        print(json.dumps([asdict(r) for r in results], indent=1))
        return
    table = Table(title=f"{loaded.scenario.name}: concurrent calls at {metric} >= {min_mos:g}")
    for column in ("variant", "calls", "trials"):
        table.add_column(column)
    for r in results:
        trials = ", ".join(f"{t.calls}{'+' if t.passed else '-'}" for t in r.trials)
        table.add_row(r.variant, f"{r.calls}{' (search limit)' if r.capped else ''}", trials)
    out.print(table)
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
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """`testbed score emodel --ta-ms TA --loss-pct PPL ...` prints R and MOS; `testbed score RUN_DIR`
    re-scores a stored run from its files and rewrites result.json, junit.xml and report.html."""
    if target == "emodel":
        _score_emodel(ta_ms, loss_pct, burst_ratio, codec, ie, bpl, wideband, as_json)
        return
    from testbed.results import RUN_FILE, RunInfo
    from testbed.runner import finish
    from testbed.scenario import load_scenario

    run_dir = Path(target)
    run_file = run_dir / RUN_FILE
    if not run_file.exists():
        raise InputError(
            f"{run_dir}: not a run directory (no run.json); give a directory written by `testbed run` or 'emodel'"
        )
    scenario_file = Path(RunInfo.load(run_file).scenario_file)
    if not scenario_file.exists():
        raise InputError(f"{run_dir}: its scenario {scenario_file} is gone; thresholds need it")
    result = finish(
        load_scenario(scenario_file),
        run_dir,
        with_pesq=not no_pesq,
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
    from testbed.scoring.codecs import codec as codec_params

    if ta_ms is None or loss_pct is None:
        raise InputError("score emodel needs --ta-ms (mouth-to-ear delay, ms) and --loss-pct (packet loss, %)")
    if codec_name is not None and (ie is not None or bpl is not None):
        raise InputError("give either --codec or --ie with --bpl, not both")
    if (ie is None) != (bpl is None):
        raise InputError("--ie and --bpl go together")
    if codec_name is not None:
        params = codec_params(codec_name)
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
    else:
        scale = "G.107.1 wideband" if wideband else "G.107 narrowband"
        out.print(
            f"R = {result.r:.2f}, MOS = {result.mos:.3f} ({scale}; Ta {ta_ms:g} ms, Ppl {loss_pct:g}%, "
            f"BurstR {burst_ratio:g}, Ie {ie or 0:g}, Bpl {bpl if bpl is not None else 1:g})",
            highlight=False,
        )
        for warning in result.warnings:
            err.print(f"note: {warning}", highlight=False)


@app.command()
@reports_errors
def cleanup(
    include_kept: Annotated[bool, typer.Option("--all", help="also remove labs kept by `testbed lab up`")] = False,
) -> None:
    """Remove what crashed or killed runs left behind (exactly what they recorded, nothing else)."""
    _require_root()
    from testbed.lab.cleanup import cleanup as clean

    removals = clean(_registry(), include_kept=include_kept)
    if not removals:
        out.print("nothing to clean up")
    for removal in removals:
        what = ", ".join(removal.removed) or "nothing left"
        out.print(f"run {removal.run_id}: removed {what}", highlight=False)
        for failure in removal.failed:
            err.print(f"[red]run {removal.run_id}: could not remove {failure}[/]", highlight=False)
    if any(r.failed for r in removals):
        raise typer.Exit(4)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise CapabilityError("this command needs root (network namespaces); run it with sudo")


# ------------------------------------------------------------------ lab


def _print_lab(info: dict[str, Any], run_id: str) -> None:
    table = Table(title=f"lab {run_id} ({info['scenario']}, {info['backend']})")
    for column in ("node", "kind", "interfaces", "namespace"):
        table.add_column(column)
    for name, node in info["nodes"].items():
        interfaces = ", ".join(f"{ifname} {address}" for ifname, address in node["interfaces"].items())
        table.add_row(name, node["kind"], interfaces, node["netns"])
    out.print(table)
    out.print(f"impairments: {_engine_summary(info.get('impairment_engine') or {})}", highlight=False)


def _engine_summary(engine: dict[str, Any]) -> str:
    ends = [f"{e['interface']}@{e['node']}" for e in engine.get("userspace", [])]
    if ends:
        return f"userspace engine on {', '.join(ends)} (impairment_engine: {engine.get('choice')})"
    if engine.get("kernel_netem"):
        return "kernel netem"
    return "kernel netem where links ask for it, else rate shaping only"


@images_app.command("build")
@reports_errors
def images_build(
    base: Annotated[
        str | None,
        typer.Option(
            help="base image (e.g. debian:bookworm-slim from your registry); "
            "default: a local Debian bookworm made with mmdebstrap"
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="rebuild even when the image is current")] = False,
) -> None:
    """Build the node image (and, without --base, a local Debian base), offline from a host wheelhouse."""
    _require_root()
    from testbed.images import build_images

    info = build_images(base, progress=lambda message: err.print(message, highlight=False, markup=False), force=force)
    out.print(f"node image ready: {info}", highlight=False)


@lab_app.command("up")
@reports_errors
def lab_up(
    scenario: Annotated[Path, typer.Argument(help="scenario file")],
    variant: Annotated[str | None, typer.Option(help="variant to build (default: the first)")] = None,
    backend: Annotated[str | None, typer.Option(help="netns (default) or docker")] = None,
    foreground: Annotated[bool, typer.Option("--foreground", help="hold the lab until Ctrl-C, then remove it")] = False,
    impairment_engine: ENGINE_OPTION = None,
) -> None:
    """Build a scenario's lab and print its nodes and addresses; it stays until `testbed lab down RUN`."""
    _require_root()
    from testbed.lab import Lab

    loaded, effective, name = _load(scenario, variant)
    with Lab(
        effective,
        backend=backend,
        keep=not foreground,
        purpose=f"lab up {scenario}",
        router_template=loaded.variant_templates[name],
        impairment_engine=impairment_engine,
    ) as lab:
        _print_lab(lab.describe(), lab.run_id)
        if foreground:
            out.print(f"lab {lab.run_id} is up; Ctrl-C removes it", highlight=False)
            sys.stdout.flush()
            signal.pause()
        else:
            out.print(
                f"run id [bold]{lab.run_id}[/]: `testbed lab exec {lab.run_id} NODE -- CMD`, "
                f"`testbed lab down {lab.run_id}`",
                highlight=False,
            )


@lab_app.command("down")
@reports_errors
def lab_down(run_ids: Annotated[list[str], typer.Argument(help="run ids from `testbed lab up`")]) -> None:
    """Remove labs kept by `testbed lab up`."""
    _require_root()
    from testbed.lab.cleanup import remove_run

    registry = _registry()
    for run_id in run_ids:
        record = registry.load(run_id)  # None also for ids that are not 6 hex digits
        if record is None:
            known = ", ".join(r.run_id for r in registry.runs()) or "none"
            raise InputError(f"no lab with run id {run_id!r} (live runs: {known})")
        removal = remove_run(registry, record)
        if removal.failed:
            raise TestbedError(f"run {run_id}: could not remove {'; '.join(removal.failed)}")
        out.print(f"lab {run_id} removed", highlight=False)


@lab_app.command("list")
@reports_errors
def lab_list() -> None:
    """List live runs and kept labs."""
    registry = _registry()
    table = Table()
    for column in ("run", "purpose", "backend", "state", "nodes"):
        table.add_column(column)
    for record in registry.runs():
        state = "kept" if record.kept else ("running" if record.owner_alive() else "stale (testbed cleanup)")
        table.add_row(record.run_id, record.purpose, record.backend, state, ", ".join(record.info.get("nodes", {})))
    out.print(table)


@lab_app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@reports_errors
def lab_exec(
    run_id: Annotated[str, typer.Argument(help="run id")],
    node: Annotated[str, typer.Argument(help="node name")],
    command: Annotated[list[str], typer.Argument(help="command and its arguments (after --)")],
) -> None:
    """Run a command inside a node of a kept lab, e.g. `testbed lab exec RUN client -- ip addr`."""
    _require_root()
    from testbed.lab import netns

    record = _registry().load(run_id)
    if record is None:
        raise InputError(f"no lab with run id {run_id!r}; `testbed lab list` shows the live ones")
    nodes = record.info.get("nodes", {})
    if node not in nodes:
        raise InputError(f"lab {run_id} has no node {node!r} (nodes: {', '.join(nodes)})")
    try:
        process = netns.popen(nodes[node]["netns"], command)
    except FileNotFoundError:
        raise InputError(f"no command {command[0]!r} in node {node!r}") from None
    try:
        raise typer.Exit(process.wait())
    except KeyboardInterrupt:
        process.wait()
        raise typer.Exit(130) from None


@lab_app.command("check")
@reports_errors
def lab_check(
    scenario: Annotated[Path, typer.Argument(help="scenario file")],
    variant: Annotated[str | None, typer.Option(help="variant to build (default: the first)")] = None,
    backend: Annotated[str | None, typer.Option(help="netns (default) or docker")] = None,
    impairment_engine: ENGINE_OPTION = None,
) -> None:
    """Build the lab, send a UDP datagram between every pair of hosts, print hops, remove the lab."""
    _require_root()
    from testbed.lab import Lab
    from testbed.lab.reach import udp_probe

    loaded, effective, name = _load(scenario, variant)
    failures = 0
    with Lab(
        effective,
        backend=backend,
        purpose=f"lab check {scenario}",
        router_template=loaded.variant_templates[name],
        impairment_engine=impairment_engine,
    ) as lab:
        hosts = [name for name, kind in lab.plan.nodes.items() if kind == "host"]
        table = Table(title=f"UDP reachability in {effective.name} (lab up in {lab.up_seconds * 1000:.0f} ms)")
        table.add_column("from \\ to")
        for host in hosts:
            table.add_column(host)
        for source in hosts:
            cells = []
            for destination in hosts:
                if source == destination:
                    cells.append("-")
                    continue
                result = udp_probe(
                    lab.node(source).netns_path,
                    lab.node(destination).netns_path,
                    str(lab.plan.address(destination)),
                    source=source,
                    destination=destination,
                )
                failures += not result.received
                cells.append(f"[green]{result.hops} hop(s)[/]" if result.received else "[red]lost[/]")
            table.add_row(source, *cells)
        out.print(table)
        out.print(f"impairments: {_engine_summary(lab.describe()['impairment_engine'])}", highlight=False)
    if failures:
        err.print(f"[red]{failures} host pair(s) unreachable[/]")
        raise typer.Exit(1)
    out.print("[green]all hosts reach each other[/]; lab removed")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
