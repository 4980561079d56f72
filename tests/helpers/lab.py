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
from pathlib import Path

from pyroute2 import IPRoute

from tests.helpers import REPO

MINIMAL = REPO / "scenarios" / "minimal.yaml"
OFFICE = REPO / "scenarios" / "office.yaml"


def browser_processes() -> list[int]:
    """Pids of running Chromium processes (the browser and its renderers, utilities, zygotes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe")
        except OSError:
            continue
        if exe.startswith("/usr/lib/chromium/"):
            pids.append(int(entry.name))
    return pids


def turn_processes(registry_root: Path | None = None) -> list[int]:
    """Pids of running coturn servers (of the runs of one registry: their pid file lives under it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            ours = registry_root is None or f"{registry_root}/" in (entry / "cmdline").read_text()
            if entry.name.isdigit() and os.readlink(entry / "exe") == "/usr/bin/turnserver" and ours:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


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


def _lines(process: subprocess.Popen, stream: str) -> queue.Queue[str | None]:
    """The lines of one of ``process``'s pipes, read by a thread that owns the pipe from now on: select()
    on the descriptor would miss lines already sitting in the text wrapper's buffer."""
    attribute = f"_testbed_{stream}_lines"
    lines = getattr(process, attribute, None)
    if lines is None:
        lines = queue.Queue()
        setattr(process, attribute, lines)
        pipe = getattr(process, stream)

        def pump() -> None:
            for line in pipe:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for_line(process: subprocess.Popen, needle: str, timeout: float = 30, stream: str = "stdout") -> str:
    """Everything ``process`` wrote to ``stream`` up to the first line containing ``needle`` (progress
    lines of `testbed run` go to stderr)."""
    lines = _lines(process, stream)
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
    other = "stderr" if stream == "stdout" else "stdout"
    raise AssertionError(
        f"{needle!r} not written within {timeout}s; got:\n{seen}\n"
        f"{getattr(process, other).read() if process.poll() is not None else ''}"
    )


def rest_of_output(process: subprocess.Popen, timeout: float = 60, stream: str = "stdout") -> str:
    """What ``process`` writes to ``stream`` after the lines ``wait_for_line`` consumed, until it exits
    (the reader thread owns the pipe from then on, so ``communicate`` would see nothing)."""
    process.wait(timeout=timeout)
    lines = getattr(process, f"_testbed_{stream}_lines", None)
    if lines is None:
        return getattr(process, stream).read()
    rest = ""
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            return rest
        if line is None:
            return rest
        rest += line
