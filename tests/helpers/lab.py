"""Helpers for tests that build labs: the CLI as a separate process (for signals and crashes), reading a
process's output as it comes, what a lab left on the host."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from pyroute2 import IPRoute

from tests.helpers import REPO

MINIMAL = REPO / "scenarios" / "minimal.yaml"
OFFICE = REPO / "scenarios" / "office.yaml"


@dataclass(frozen=True)
class HostState:
    namespaces: frozenset[str]
    root_links: frozenset[str]

    @classmethod
    def now(cls) -> HostState:
        namespaces = frozenset(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else frozenset()
        with IPRoute() as ipr:
            links = frozenset(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())
        return cls(namespaces, links)


def run_testbed(*args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI as a user would (a separate process)."""
    return subprocess.run(
        [sys.executable, "-m", "testbed.cli", *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def start_testbed(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def lab_namespaces(run_id: str) -> set[str]:
    return {n for n in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else []) if f"-{run_id}-" in n}


def wait_for_line(process: subprocess.Popen, needle: str, timeout: float = 30) -> str:
    """Everything ``process`` printed up to the first line containing ``needle``.

    A reader thread owns the pipe: select() on the descriptor would miss lines already sitting in the
    text wrapper's buffer when several arrive in one chunk.
    """
    lines = getattr(process, "_testbed_lines", None)
    if lines is None:
        lines = process._testbed_lines = queue.Queue()

        def pump() -> None:
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen += line
        if needle in line:
            return seen
    raise AssertionError(
        f"{needle!r} not printed within {timeout}s; got:\n{seen}\n"
        f"{process.stderr.read() if process.poll() is not None else ''}"
    )


def rest_of_output(process: subprocess.Popen, timeout: float = 60) -> str:
    """What ``process`` prints after the lines ``wait_for_line`` consumed, until it exits (its reader
    thread owns stdout from then on, so ``communicate`` would see nothing)."""
    process.wait(timeout=timeout)
    lines = getattr(process, "_testbed_lines", None)
    if lines is None:
        return process.stdout.read()
    rest = ""
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            return rest
        if line is None:
            return rest
        rest += line
