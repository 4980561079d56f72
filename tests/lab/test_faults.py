"""Faults mid-run, one test each: a testbed process killed (agent, impairment engine, tap, traffic), a
tc command that fails, the results disk full. Each run ends with exit 4 and a message that names the
fault; what was recorded until then is kept, and `testbed score` reads it (exit 4 again: the figures
are partial); nothing is left on the host. (A browser that crashes drops its one call: test_chromium;
coturn killed: test_turn; a container stopped: tests/docker.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.faults import live_testbed_processes, run_processes
from tests.helpers.lab import rest_of_output, run_testbed, start_testbed, wait_for_line

FAULTY = """name: faulty
links:
  wan:
    router: {rate: 10mbit, delay: 5ms, loss: 0.5%}
    gateway: {delay: 5ms}
calls:
  - {name: call, from: client, to: gateway, talk: 8s}
traffic:
  - {name: bulk, kind: udp_cbr, from: client, to: gateway, rate: 1mbit, start: 0.5s}
"""

# what is killed, in which node, and what the error must say
KILLS = {
    "agent": ("client", "the agent in node client died (killed by SIGKILL)"),
    "engine": (None, "impairment engine for wan@"),
    "tap": ("gateway", "the packet tap 'wan' in node gateway ended on its own (killed by SIGKILL)"),
    "traffic": ("client", "the traffic source 'bulk' in node client ended on its own (killed by SIGKILL)"),
}


def check_partial_results(out: Path, fault: str) -> None:
    """run.json and the variant's records are there, the fault is recorded, and `testbed score` reads them:
    it scores what there is and exits 4, with the failed 'run completed' check naming the fault."""
    assert (out / "run.json").exists() and (out / "default" / "lab.json").exists()
    workload = json.loads((out / "default" / "workload.json").read_text())
    assert fault in workload["fault"], workload["fault"]
    scored = run_testbed("score", str(out), "--no-pesq", "--json", timeout=120)
    assert scored.returncode == 4, scored.stderr
    result = json.loads(scored.stdout)
    assert fault in result["variants"][0]["fault"]
    assert [c["rule"] for c in result["thresholds"] if not c["passed"]] == ["run completed"]
    assert "the run stopped at a fault" in scored.stderr
    assert len(result["variants"][0]["calls"]) == 1


def run_until_fault(scenario: Path, out: Path, inject) -> tuple[int, str]:
    """Start `testbed run`, wait until its call is up and has carried 2 s of media, ``inject`` the fault,
    then wait for the run to end: its exit status and what it wrote to stderr."""
    process = start_testbed("run", str(scenario), "--out", str(out), "--no-live")
    wait_for_line(process, ": connected", timeout=60, stream="stderr")
    time.sleep(2)
    inject()
    errors = rest_of_output(process, timeout=120, stream="stderr")
    return process.returncode, errors


@pytest.mark.parametrize("kind", list(KILLS))
def test_a_killed_testbed_process_ends_the_run_with_exit_4(registry, no_leftovers, tmp_path, kind):
    node, said = KILLS[kind]
    scenario = tmp_path / "faulty.yaml"
    scenario.write_text(FAULTY)
    before = live_testbed_processes()
    killed = []

    def kill() -> None:
        pids = run_processes(registry, kind, node)
        assert pids, f"no {kind} process found in {node or 'any node'}"
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])

    code, errors = run_until_fault(scenario, tmp_path / "out", kill)
    assert code == 4, errors
    assert said in errors and "partial results in" in errors, errors
    check_partial_results(tmp_path / "out", said)
    assert live_testbed_processes() - before == set(), "testbed processes left behind"


BROKEN_SCRIPT = """description: its second line names a parent qdisc that does not exist
kind: tc-script
script: |
  tc qdisc replace dev {wan} root handle 1: htb default 20
  tc qdisc add dev {wan} parent 7:7 handle 70: pfifo limit 64
"""


def test_a_failing_tc_command_ends_the_run_with_exit_4(registry, no_leftovers, tmp_path):
    """A timeline switches the router to a tc script that the kernel refuses mid-call: a real tc error."""
    (tmp_path / "routers").mkdir()
    (tmp_path / "routers" / "broken-script.yaml").write_text(BROKEN_SCRIPT)
    scenario = tmp_path / "tc.yaml"
    scenario.write_text(
        "name: tcfail\nlinks: {wan: {router: {rate: 10mbit}}}\nrouter: {wan: wan, lan: lan}\n"
        "calls: [{name: call, from: client, to: gateway, talk: 6s}]\n"
        "timeline: [{at: 2s, action: set_router_template, template: broken-script}]\n"
    )
    result = run_testbed("run", str(scenario), "--out", str(tmp_path / "out"), "--no-live", timeout=120)
    said = "tc-script line 2: `tc qdisc add dev wan parent 7:7 handle 70: pfifo limit 64` in router failed"
    assert result.returncode == 4 and said in result.stderr, result.stderr
    check_partial_results(tmp_path / "out", said)


@pytest.fixture
def small_disk(tmp_path):
    """A 100 KiB tmpfs: room for the run's first records, not for all of them."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_results_disk_ends_the_run_with_exit_4(registry, no_leftovers, tmp_path, small_disk):
    scenario = tmp_path / "short.yaml"
    scenario.write_text("name: short\ncalls: [{name: call, from: client, to: gateway, talk: 4s}]\n")
    before = live_testbed_processes()
    result = run_testbed("run", str(scenario), "--out", str(small_disk / "out"), "--no-live", timeout=120)
    assert result.returncode == 4, result.stderr
    assert "no space left on the disk" in result.stderr and "--out" in result.stderr, result.stderr
    assert "No space left on device" in result.stderr  # the tap that could not write its records, first
    written = [p for p in (small_disk / "out").rglob("*") if p.is_file()]
    assert written, "the records written before the disk filled up are kept"
    assert not [p for p in written if p.name.endswith(".partial") or p.stat().st_size == 0 and p.suffix == ".json"]
    assert live_testbed_processes() - before == set(), "testbed processes left behind"
