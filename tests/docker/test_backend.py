"""The docker backend with real containers: the same scenario gives the same verdict as on network
namespaces, containers are never privileged, and nothing is left behind in any way a run can end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from testbed.lab import Lab
from testbed.lab.backends.docker import RUN_LABEL
from testbed.scenario.model import Scenario
from tests.helpers import REPO
from tests.helpers.concurrent import check_they_never_met, run_two_at_once
from tests.helpers.lab import rest_of_output, run_testbed, start_testbed, wait_for_line

pytestmark = pytest.mark.docker


def our_containers(engine, run_ids) -> list[str]:
    return [
        c.name
        for c in engine.containers.list(all=True, filters={"label": RUN_LABEL})
        if c.labels.get(RUN_LABEL) in run_ids
    ]


def test_containers_are_not_privileged(engine, registry, no_leftovers):
    scenario = Scenario.model_validate({"name": "docker", "backend": "docker"})
    with Lab(scenario, registry=registry) as lab:
        containers = [engine.containers.get(node.container) for node in lab.nodes.values()]
        for container in containers:
            host = container.attrs["HostConfig"]
            assert host["Privileged"] is False
            assert host["CapAdd"] == ["NET_ADMIN"]
            assert host["NetworkMode"] == "none" and host["Init"] is True
            assert container.labels[RUN_LABEL] == lab.run_id
        # a process of the node (docker exec, the image's Python) sees the address the lab gave it
        inside = lab.node("client").popen(
            [
                "python3",
                "-c",
                (
                    "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                    f"s.connect(('{lab.plan.address('gateway')}', 9)); print(s.getsockname()[0])"
                ),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = inside.communicate(timeout=60)
        assert out.strip() == str(lab.plan.address("client")), err
    assert our_containers(engine, registry.history()) == []


def run_office(tmp_path, backend: str) -> dict:
    result = run_testbed(
        "run",
        str(REPO / "scenarios" / "office.yaml"),
        "--backend",
        backend,
        "--out",
        str(tmp_path / backend),
        "--json",
        timeout=600,
    )
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


def test_office_gives_the_same_verdict_as_netns(engine, registry, no_leftovers, tmp_path):
    docker_run, netns_run = run_office(tmp_path, "docker"), run_office(tmp_path, "netns")
    assert docker_run["verdict"]["passed"] == netns_run["verdict"]["passed"] is True
    for docker_variant, netns_variant in zip(docker_run["variants"], netns_run["variants"], strict=False):
        for docker_call, netns_call in zip(docker_variant["calls"], netns_variant["calls"], strict=False):
            for direction, scores in docker_call["directions"].items():
                other = netns_call["directions"][direction]
                assert abs(scores["mos_emodel"] - other["mos_emodel"]) <= 0.3, (docker_variant["name"], direction)
    assert our_containers(engine, registry.history()) == []


def test_failure_and_interrupt_leave_nothing(engine, registry, no_leftovers, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbackend: docker\nrouter: {template: broken}\n")
    (tmp_path / "routers").mkdir()
    (tmp_path / "routers" / "broken.yaml").write_text(
        "kind: tc-script\nscript: |\n  tc class add dev {wan} parent 9: classid 9:1 htb rate 1mbit\n"
    )
    failed = run_testbed("lab", "check", str(bad), timeout=120)
    assert failed.returncode == 4 and "tc-script line 1" in failed.stderr
    scenario = tmp_path / "long.yaml"
    scenario.write_text("name: long\nbackend: docker\ncalls: [{from: client, to: gateway, duration: 60s}]\n")
    process = start_testbed("run", str(scenario), "--out", str(tmp_path / "out"))
    wait_for_line(process, ": connected", timeout=120, stream="stderr")  # the call is up: interrupt it mid-call
    assert our_containers(engine, registry.history())
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    assert process.returncode == 130
    assert our_containers(engine, registry.history()) == []


def test_a_container_stopped_mid_call_ends_the_run_with_exit_4(engine, registry, no_leftovers, tmp_path):
    """`docker stop` of the gateway's container from outside: its agent dies with it, the run says so and
    exits 4, what was recorded is kept and scored, and every container goes."""
    scenario = tmp_path / "stopped.yaml"
    scenario.write_text("name: stopped\nbackend: docker\ncalls: [{name: call, from: client, to: gateway, talk: 8s}]\n")
    out = tmp_path / "out"
    process = start_testbed("run", str(scenario), "--out", str(out), "--no-live")
    wait_for_line(process, ": connected", timeout=120, stream="stderr")
    time.sleep(2)
    (gateway,) = [name for name in our_containers(engine, registry.history()) if name.endswith("-gateway")]
    engine.containers.get(gateway).stop(timeout=0)
    errors = rest_of_output(process, timeout=120, stream="stderr")
    assert process.returncode == 4, errors
    assert "the agent in node gateway died (exit status 137: killed by SIGKILL)" in errors, errors
    assert "partial results in" in errors
    scored = run_testbed("score", str(out), "--no-pesq", "--json", timeout=120)
    assert scored.returncode == 4, scored.stderr
    assert "the agent in node gateway died" in json.loads(scored.stdout)["variants"][0]["fault"]
    assert our_containers(engine, registry.history()) == []


def test_sigkill_then_cleanup_removes_the_containers(engine, registry, no_leftovers, tmp_path):
    scenario = tmp_path / "killed.yaml"
    scenario.write_text("name: killed\nbackend: docker\n")
    process = start_testbed("lab", "up", str(scenario), "--foreground")
    wait_for_line(process, "is up", timeout=90)  # every container made and wired
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert len(our_containers(engine, registry.history())) == 3
    cleaned = run_testbed("cleanup", timeout=120)
    assert cleaned.returncode == 0, cleaned.stderr
    assert our_containers(engine, registry.history()) == []


def test_lab_updown_bench_runs(engine, registry):
    result = subprocess.run(
        [os.sys.executable, str(REPO / "bench" / "lab_updown.py"), "--backend", "docker", "--runs", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "up+down  median" in result.stdout


def test_two_docker_runs_at_once_never_meet(engine, registry, no_leftovers, tmp_path):
    """As tests/lab/test_concurrent.py, with containers: both complete, and every container goes."""
    results = run_two_at_once(tmp_path, "docker")
    check_they_never_met(tmp_path, results, registry)
    assert our_containers(engine, registry.history()) == []
