"""Real-time priority for the harness's own timing-critical processes, set from the host.

Agents pace media in 20 ms steps and impairment engines release packets on time; on a busy machine
both need a real-time scheduling class. A process in a namespace node sets its own; a container has
no CAP_SYS_NICE (containers get NET_ADMIN only), so the harness, as root on the host, sets it from
outside. Children start at normal priority (SCHED_RESET_ON_FORK): traffic sources spin.
"""

from __future__ import annotations

import os
from pathlib import Path

from testbed.lab import netns

AGENT = ("testbed.media.agent", os.SCHED_RR, 5)
ENGINE = ("testbed.lab.engine", os.SCHED_FIFO, 10)


def promote(namespace: Path, marker: str, policy: int, priority: int) -> int:
    """Give every process in ``namespace`` whose command line contains ``marker`` the real-time class.
    Returns how many were promoted (0 where the kernel refuses, e.g. without CAP_SYS_NICE)."""
    promoted = 0
    for pid in netns.pids_in(namespace):
        try:
            if marker.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            for thread in os.listdir(f"/proc/{pid}/task"):  # asyncio's loop and any helper threads
                os.sched_setscheduler(int(thread), policy | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
            promoted += 1
        except (OSError, ValueError):
            continue  # gone meanwhile, or not permitted: normal priority still works
    return promoted
