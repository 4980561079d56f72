"""Nothing escapes the run: a run with every moving part (a Chromium caller over TURN/TLS through the
office edge, coturn, the WSS signalling service, taps, cross traffic) opens no listening socket in the
host's own network namespace, and writes files only in its run directory and its per-run scratch and
registry directories, which are gone when it ends."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from testbed import scratch
from tests.helpers import REPO
from tests.helpers.lab import rest_of_output, start_testbed, wait_for_line

EVERYTHING = (
    (REPO / "scenarios" / "firewall.yaml")
    .read_text()
    .replace(
        "  - {name: rep, from: client, to: gateway, duration: 10s, ice: {turn: tls}}",
        "  - {name: rep, from: client, to: gateway, duration: 6s, ice: {turn: tls}, endpoint: {from: chromium}}\n"
        "traffic:\n  - {name: bulk, kind: udp_cbr, from: client, to: gateway, rate: 200kbit, start: 1s}",
    )
)
# where any process may write as a matter of course: kernel and runtime state, and Python's own caches
NOT_THE_RUNS = ("/proc", "/sys", "/dev", "/run/udev", "/var/log", "/var/lib/docker", "/var/cache")


def listening_sockets() -> set[str]:
    """Listening TCP and bound UDP sockets of the host's own namespace, by local address and process."""
    shown = subprocess.run(["ss", "-H", "-l", "-n", "-t", "-u", "-p"], capture_output=True, text=True, check=True)
    return {f"{line.split()[0]} {line.split()[4]} {line.split()[-1]}" for line in shown.stdout.splitlines() if line}


def files_written_since(marker: Path, allowed: list[Path]) -> list[str]:
    """Regular files modified after ``marker`` anywhere on the root file system, outside ``allowed``."""
    found = subprocess.run(
        ["find", "/", "-xdev", "-type", "f", "-newer", str(marker)], capture_output=True, text=True
    ).stdout.splitlines()
    keep = []
    for path in found:
        if path.startswith(NOT_THE_RUNS) or "/__pycache__/" in path or path == str(marker):
            continue
        if any(path.startswith(f"{root}/") for root in allowed):
            continue
        keep.append(path)
    return keep


def test_a_run_listens_and_writes_only_inside_its_own_lab(registry, no_leftovers, tmp_path):
    scenario = tmp_path / "everything.yaml"
    scenario.write_text(EVERYTHING)
    out = tmp_path / "out"
    marker = tmp_path / "marker"
    marker.write_text("")
    time.sleep(0.05)  # a file written from here on is newer than the marker
    before = listening_sockets()
    process = start_testbed("run", str(scenario), "--variant", "udp-blocked", "--out", str(out), "--no-live")
    wait_for_line(process, ": connected", timeout=120, stream="stderr")
    during = listening_sockets()  # the browser, coturn, the signalling service and the agents all run now
    errors = rest_of_output(process, timeout=180, stream="stderr")
    assert process.returncode == 0, errors
    assert (out / "result.json").exists()
    assert during - before == set(), f"listening in the host's namespace: {during - before}"
    allowed = [tmp_path, registry.root, scratch.root()]
    assert files_written_since(marker, allowed) == []
    assert list(scratch.root().iterdir()) == []  # the browser's profile went with the run


def test_the_soak_bench_finds_nothing_grown_after_three_runs(registry, no_leftovers):
    """bench/soak.py's short form: three runs in one harness, every count back where it started (the
    100-run figures are the bench's; CI checks that it runs and that nothing grows)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--runs", "3", "--settle", "10"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "registry records" in result.stdout and "netns (this soak's runs)" in result.stdout
    assert result.stderr.count("passed") == 3
