"""``testbed lab ...``: bring a scenario's network up, use it, check it, take it down."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from testbed.cli.common import BackendOption, EngineOption, err, out, reports_errors, require_root
from testbed.errors import ExitCode, InputError, TestbedError

if TYPE_CHECKING:
    from testbed.api import LabSession

app = typer.Typer(no_args_is_help=True, help="Bring a scenario's network up, use it, take it down.")


def _lab(
    scenario: Path, variant: str | None, backend: str | None, engine: str | None, *, keep: bool, purpose: str
) -> LabSession:
    """The variant's lab as the API builds it (router template included), not yet up."""
    from testbed.api import load

    return load(scenario).lab(variant, backend=backend, impairment_engine=engine, keep=keep, purpose=purpose)


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


@app.command("up")
@reports_errors
def lab_up(
    scenario: Annotated[Path, typer.Argument(help="scenario file")],
    variant: Annotated[str | None, typer.Option(help="variant to build (default: the first)")] = None,
    backend: BackendOption = None,
    foreground: Annotated[bool, typer.Option("--foreground", help="hold the lab until Ctrl-C, then remove it")] = False,
    impairment_engine: EngineOption = None,
) -> None:
    """Build a scenario's lab and print its nodes and addresses; it stays until `testbed lab down RUN`."""
    require_root()
    with _lab(scenario, variant, backend, impairment_engine, keep=not foreground, purpose=f"lab up {scenario}") as lab:
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


@app.command("down")
@reports_errors
def lab_down(run_ids: Annotated[list[str], typer.Argument(help="run ids from `testbed lab up`")]) -> None:
    """Remove labs kept by `testbed lab up`."""
    require_root()
    from testbed.lab.cleanup import remove_run
    from testbed.lab.registry import Registry

    registry = Registry()
    for run_id in run_ids:
        record = registry.load(run_id)  # None also for ids that are not 6 hex digits
        if record is None:
            known = ", ".join(r.run_id for r in registry.runs()) or "none"
            raise InputError(f"no lab with run id {run_id!r} (live runs: {known})")
        removal = remove_run(registry, record)
        if removal.failed:
            raise TestbedError(f"run {run_id}: could not remove {'; '.join(removal.failed)}")
        out.print(f"lab {run_id} removed", highlight=False)


@app.command("list")
@reports_errors
def lab_list() -> None:
    """List live runs and kept labs."""
    from testbed.lab.registry import Registry

    table = Table()
    for column in ("run", "purpose", "backend", "state", "nodes"):
        table.add_column(column)
    for record in Registry().runs():
        state = "kept" if record.kept else ("running" if record.owner_alive() else "stale (testbed cleanup)")
        table.add_row(record.run_id, record.purpose, record.backend, state, ", ".join(record.info.get("nodes", {})))
    out.print(table)


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@reports_errors
def lab_exec(
    run_id: Annotated[str, typer.Argument(help="run id")],
    node: Annotated[str, typer.Argument(help="node name")],
    command: Annotated[list[str], typer.Argument(help="command and its arguments (after --)")],
) -> None:
    """Run a command inside a node of a kept lab, e.g. `testbed lab exec RUN client -- ip addr`."""
    require_root()
    from testbed.lab import iptables, netns
    from testbed.lab.registry import Registry

    record = Registry().load(run_id)
    if record is None:
        raise InputError(f"no lab with run id {run_id!r}; `testbed lab list` shows the live ones")
    nodes = record.info.get("nodes", {})
    if node not in nodes:
        raise InputError(f"lab {run_id} has no node {node!r} (nodes: {', '.join(nodes)})")
    try:
        process = netns.popen(nodes[node]["netns"], iptables.pinned(command))
    except FileNotFoundError:
        raise InputError(f"no command {command[0]!r} in node {node!r}") from None
    try:
        raise typer.Exit(process.wait())
    except KeyboardInterrupt:
        process.wait()
        raise typer.Exit(ExitCode.INTERRUPTED) from None


@app.command("check")
@reports_errors
def lab_check(
    scenario: Annotated[Path, typer.Argument(help="scenario file")],
    variant: Annotated[str | None, typer.Option(help="variant to build (default: the first)")] = None,
    backend: BackendOption = None,
    impairment_engine: EngineOption = None,
) -> None:
    """Build the lab, send a UDP datagram between every pair of hosts, print hops, remove the lab."""
    require_root()
    from testbed.lab.reach import all_pairs, hosts

    with _lab(scenario, variant, backend, impairment_engine, keep=False, purpose=f"lab check {scenario}") as lab:
        results = {(r.source, r.destination): r for r in all_pairs(lab.lab)}
        names = hosts(lab.lab)
        up_ms = (lab.lab.up_seconds or 0) * 1000
        table = Table(title=f"UDP reachability in {lab.lab.scenario.name} (lab up in {up_ms:.0f} ms)")
        table.add_column("from \\ to")
        for host in names:
            table.add_column(host)
        for source in names:
            cells = []
            for destination in names:
                result = results.get((source, destination))
                if result is None:
                    cells.append("-")
                else:
                    cells.append(f"[green]{result.hops} hop(s)[/]" if result.received else "[red]lost[/]")
            table.add_row(source, *cells)
        out.print(table)
        out.print(f"impairments: {_engine_summary(lab.describe()['impairment_engine'])}", highlight=False)
    failures = sum(not r.received for r in results.values())
    if failures:
        err.print(f"[red]{failures} host pair(s) unreachable[/]")
        raise typer.Exit(ExitCode.FAILED)
    out.print("[green]all hosts reach each other[/]; lab removed")


@app.command("edge")
@reports_errors
def lab_edge(
    scenario: Annotated[Path, typer.Argument(help="scenario file")],
    variant: Annotated[str | None, typer.Option(help="variant to build (default: the first)")] = None,
    source: Annotated[str, typer.Option("--from", help="the office side")] = "client",
    destination: Annotated[str, typer.Option("--to", help="the vendor's side")] = "gateway",
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
    backend: BackendOption = None,
    impairment_engine: EngineOption = None,
) -> None:
    """Try the flows dialer vendors require (UDP 10000-60000, TCP 443, TCP/UDP 3478; TURN allocations
    over UDP, TCP and TLS with the scenario's TURN server) from the office through the router; exit 1
    when a required one is blocked."""
    require_root()
    from testbed.lab.edge_check import check_edge, media_path

    with _lab(scenario, variant, backend, impairment_engine, keep=False, purpose=f"lab edge {scenario}") as lab:
        try:
            results = check_edge(lab.lab, source, destination)
        except KeyError as exc:
            raise InputError(str(exc.args[0])) from None
        name = lab.lab.scenario.name
    if as_json:
        out.print_json(
            data={
                "scenario": name,
                "from": source,
                "to": destination,
                "media_path": media_path(results),
                "flows": [r.as_dict() for r in results],
            }
        )
    else:
        table = Table(title=f"the vendors' flows from {source} to {destination} in {name}")
        for column in ("flow", "protocol", "ports", "required", "result", "connect", "grade"):
            table.add_column(column)
        for r in results:
            verdict = "[green]allowed[/]" if r.allowed else "[red]blocked[/]"
            connect = "-" if r.connect_ms is None else f"{r.connect_ms:.0f} ms"
            table.add_row(r.flow, r.protocol, r.ports, "yes" if r.required else "no", verdict, connect, r.grade)
        out.print(table)
        out.print(f"media path: {media_path(results)}", highlight=False)
    blocked = [r.flow for r in results if r.required and not r.allowed]
    if blocked:
        err.print(f"[red]required flows blocked: {', '.join(blocked)}[/]")
        raise typer.Exit(ExitCode.FAILED)
