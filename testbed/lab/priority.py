"""Real-time priority for the harness's own timing-critical processes, set from the host.

Agents pace media in 20 ms steps and impairment engines release packets on time; on a busy machine
both need a real-time scheduling class (``testbed.proc.AGENT``/``ENGINE``). A process in a namespace
node sets its own; a container has no CAP_SYS_NICE (containers get NET_ADMIN only), so the harness, as
root on the host, sets it from outside. Children start at normal priority (SCHED_RESET_ON_FORK):
traffic sources spin.

Only the process's main thread is promoted, never its helper threads: numpy's OpenBLAS starts one
worker per core at import, and an OpenBLAS worker spins (sched_yield) after each job before it sleeps;
at a real-time priority such a spin starves every normal process on that core (packet taps, senders,
ksoftirqd's packet processing) for as long as it lasts.
"""

from __future__ import annotations

from pathlib import Path

from testbed.lab import netns
from testbed.proc import AGENT, ENGINE, RealTime, set_realtime

__all__ = ["AGENT", "ENGINE", "RealTime", "promote"]


def promote(namespace: Path, rt: RealTime) -> int:
    """Give every process in ``namespace`` whose command line contains ``rt.marker`` (or whose name is
    ``rt.comm``: a child of the fork server) the real-time class.
    Returns how many were promoted (0 where the kernel refuses, e.g. without CAP_SYS_NICE)."""
    promoted = 0
    for pid in netns.pids_in(namespace):
        try:
            ours = rt.marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
            if not ours and Path(f"/proc/{pid}/comm").read_text().strip() != rt.comm:
                continue
        except OSError:
            continue  # gone meanwhile
        if set_realtime(rt, pid):  # the main thread: where the event loop runs
            promoted += 1
    return promoted
