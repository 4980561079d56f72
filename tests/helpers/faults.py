"""Helpers for fault tests: find a run's own processes by what they are and which node they run in, and
the testbed processes still alive after a run."""

from __future__ import annotations

import os
from pathlib import Path

from testbed.lab.registry import Registry

# how each kind of testbed process shows itself: the forked ones by name (comm), engines by command line
KINDS = {
    "agent": "vtb-agent",
    "tap": "vtb-tap",
    "traffic": "vtb-traffic",
    "engine": "testbed.lab.engine",
}


def _describe(pid: Path) -> tuple[str, str, int] | None:
    try:
        comm = (pid / "comm").read_text().strip()
        cmdline = (pid / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return comm, cmdline, os.stat(pid / "ns" / "net").st_ino
    except OSError:
        return None


def node_namespaces(registry: Registry) -> dict[int, str]:
    """The network namespaces of the runs this registry started: inode -> node name."""
    found = {}
    run_ids = set(registry.history())
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        parts = name.split("-", 2)
        if len(parts) == 3 and parts[0] == "vtb" and parts[1] in run_ids:
            try:
                found[os.stat(f"/run/netns/{name}").st_ino] = parts[2]
            except OSError:
                continue
    return found


def run_processes(registry: Registry, kind: str, node: str | None = None) -> list[int]:
    """Pids of ``kind`` (a key of KINDS) running in the namespaces of this registry's runs (in ``node``)."""
    marker, namespaces, pids = KINDS[kind], node_namespaces(registry), []
    for entry in Path("/proc").iterdir():
        described = _describe(entry) if entry.name.isdigit() else None
        if described is None:
            continue
        comm, cmdline, inode = described
        if (comm == marker or marker in cmdline) and inode in namespaces and node in (None, namespaces[inode]):
            pids.append(int(entry.name))
    return pids


def live_testbed_processes() -> set[int]:
    """Every testbed process on the host: agents, taps, traffic, fork servers and impairment engines."""
    pids = set()
    for entry in Path("/proc").iterdir():
        described = _describe(entry) if entry.name.isdigit() else None
        if described is not None:
            comm, cmdline, _ = described
            if comm.startswith("vtb-") or "testbed.lab.engine" in cmdline or "testbed.lab.zygote" in cmdline:
                pids.add(int(entry.name))
    return pids
