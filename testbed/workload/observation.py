"""What the workload observes besides the calls' own records: packet taps, one per interface of every call
node, started at once and stopped at once (each writes its records as it ends; one that ends without
them is a fault of the run), and the queues the sampler reads each second."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from testbed.lab import Lab
from testbed.workload.agents import AgentError, Agents
from testbed.workload.faults import describe_exit


def start_taps(
    agents: Agents, lab: Lab, nodes: list[str], out_dir: Path
) -> tuple[dict[str, str], list[Future[dict[str, Any]]]]:
    """Ask for a tap on every interface of ``nodes``: 'node/interface' -> file prefix, and the futures
    that resolve when each is ready."""
    from testbed.media.tap import tap_command

    taps = {}
    starting = []  # every tap at once: each waits for its own ready line in its agent
    for node in nodes:
        for interface in lab.plan.node_interfaces(node):
            prefix = str(out_dir / "taps" / f"{node}-{interface.ifname}")
            starting.append(
                agents[node].request(
                    "child_start",
                    name=f"tap-{interface.ifname}",
                    argv=tap_command(interface.ifname, prefix, python=lab.node(node).python),
                )
            )
            taps[f"{node}/{interface.ifname}"] = prefix
    return taps, starting


def stop_taps(
    agents: Agents, taps: dict[str, str], progress: Callable[[str], None]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Stop every tap at once; each one's closing summary (packets, the kernel's drop counter, CPU), and
    a line for each tap that ended without writing its records (a full disk, an error)."""
    summaries: dict[str, dict[str, Any]] = {}
    lost: list[str] = []
    stopping = {key: agents[key.split("/")[0]].request("child_stop", name=f"tap-{key.split('/')[1]}") for key in taps}
    for key, future in stopping.items():
        try:
            stopped = future.result(60.0)
        except (AgentError, TimeoutError) as exc:
            progress(f"tap {key}: {exc}")
            continue
        reports = stopped.get("reports", [])
        done = [r for r in reports if r.get("event") == "done"]
        if done:
            summaries[key] = {k: v for k, v in done[-1].items() if k != "event"}
        else:
            said = [str(r.get("message") or r.get("text") or r) for r in reports if r.get("event") != "ready"]
            lost.append(
                f"the packet tap on {key} ended without its records ({describe_exit(stopped.get('code'))}"
                + (f": {said[-1][:300]}" if said else "")
                + ")"
            )
    return summaries, lost


def queue_targets(lab: Lab) -> list[tuple[str, Path, str]]:
    """Every shaped or classified interface: the router's sides and every impaired link end."""
    targets = set()
    if lab.router is not None:
        node, sides = lab.router
        targets |= {(node, link) for link in sides.values()}
    for link, ends in lab.links.items():
        targets |= {(node, link) for node in ends}
    return [(node, lab.node(node).netns_path, link) for node, link in sorted(targets)]
