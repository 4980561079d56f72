"""The netns lab with real namespaces and packets: reachability, TTL, independence, teardown."""

from __future__ import annotations

import re
import signal
import socket

import pytest

from testbed.lab import Lab, netns
from testbed.lab.reach import all_pairs, hosts, udp_probe
from testbed.scenario import load_scenario
from tests.helpers.lab import MINIMAL, OFFICE, lab_namespaces, run_testbed, start_testbed, wait_for_line


def minimal():
    return load_scenario(MINIMAL).scenario


def test_datagram_crosses_router_with_ttl_decremented(registry, no_leftovers):
    result = run_testbed("lab", "up", str(MINIMAL))
    assert result.returncode == 0, result.stderr
    run_id = re.search(r"run id (\w+)", result.stdout)[1]
    record = registry.load(run_id)
    nodes = record.info["nodes"]
    assert set(nodes) == {"client", "router", "gateway"}
    gateway_address = nodes["gateway"]["interfaces"]["wan"].split("/")[0]
    probe = udp_probe(nodes["client"]["netns"], nodes["gateway"]["netns"], gateway_address)
    assert probe.received and probe.ttl == 63 and probe.hops == 1
    # the lab is usable from the CLI: a command inside a node sees the node's own addresses
    shown = run_testbed("lab", "exec", run_id, "router", "--", "cat", "/proc/sys/net/ipv4/ip_forward")
    assert shown.returncode == 0 and shown.stdout.strip() == "1"
    port_range = run_testbed("lab", "exec", run_id, "client", "--", "cat", "/proc/sys/net/ipv4/ip_local_port_range")
    assert port_range.stdout.split() == ["10000", "60000"]
    assert run_testbed("lab", "exec", run_id, "client", "--", "false").returncode == 1
    down = run_testbed("lab", "down", run_id)
    assert down.returncode == 0, down.stderr
    assert not lab_namespaces(run_id)


def test_switched_segments_reach_every_host(registry, no_leftovers):
    result = run_testbed("lab", "check", str(OFFICE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all hosts reach each other" in result.stdout
    assert result.stdout.count("1 hop(s)") == 8 and result.stdout.count("0 hop(s)") == 4


def test_all_pairs_probes_every_ordered_host_pair(registry, no_leftovers):
    with Lab(load_scenario(OFFICE).scenario, registry=registry) as lab:
        names = hosts(lab)
        rows = all_pairs(lab)
    assert len(names) > 2 and "router" not in names
    assert [(row.source, row.destination) for row in rows] == [(s, d) for s in names for d in names if s != d]
    assert all(row.received and row.hops is not None and row.hops >= 0 for row in rows)


def test_two_labs_from_one_scenario_are_independent(registry, no_leftovers):
    with Lab(minimal(), registry=registry) as first, Lab(minimal(), registry=registry) as second:
        assert first.run_id != second.run_id
        address = str(first.plan.address("gateway"))
        assert address == str(second.plan.address("gateway"))  # same plan, separate networks
        assert udp_probe(first.node("client").netns_path, first.node("gateway").netns_path, address).hops == 1
        assert udp_probe(second.node("client").netns_path, second.node("gateway").netns_path, address).hops == 1
        # a datagram sent in the first lab never shows up in the second
        receiver = netns.run_in(second.node("gateway").netns_path, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
        with receiver:
            receiver.bind((address, 0))
            receiver.settimeout(0.5)
            sender = netns.run_in(first.node("client").netns_path, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
            with sender:
                for _ in range(3):
                    sender.sendto(b"x", (address, receiver.getsockname()[1]))
            with pytest.raises(TimeoutError):
                receiver.recv(16)


def test_exception_during_setup_leaves_nothing(registry, no_leftovers, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("injected failure while addressing")

    monkeypatch.setattr("testbed.lab.links.configure_addresses", fail)
    with pytest.raises(RuntimeError, match="injected"), Lab(minimal(), registry=registry):
        pass


def test_exception_inside_the_lab_leaves_nothing(registry, no_leftovers):
    with pytest.raises(ZeroDivisionError), Lab(minimal(), registry=registry) as lab:
        assert len(lab_namespaces(lab.run_id)) == 3
        1 / 0  # noqa: B018 - the exception is the point


def test_processes_in_nodes_are_stopped(registry, no_leftovers):
    with Lab(minimal(), registry=registry) as lab:
        sleeper = lab.node("client").popen(["sleep", "60"])
        namespace = lab.node("client").netns_path
        assert netns.pids_in(namespace) == [sleeper.pid]
    assert sleeper.wait(timeout=5) == -signal.SIGTERM


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_tears_the_lab_down(registry, no_leftovers, signum):
    process = start_testbed("lab", "up", str(OFFICE), "--foreground")
    try:
        printed = wait_for_line(process, "is up")
        run_id = re.search(r"lab (\w+) is up", printed)[1]
        assert len(lab_namespaces(run_id)) == 7  # 5 nodes and 2 switches
        process.send_signal(signum)
        assert process.wait(timeout=30) == 130
        assert not lab_namespaces(run_id)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigkill_then_cleanup_removes_exactly_that_run(registry, no_leftovers):
    kept = run_testbed("lab", "up", str(MINIMAL))  # a lab someone keeps on purpose: cleanup must spare it
    kept_id = re.search(r"run id (\w+)", kept.stdout)[1]
    netns.create("vtb-user-owned")  # looks like ours, is not in the registry: must be spared too
    try:
        process = start_testbed("lab", "up", str(OFFICE), "--foreground")
        run_id = re.search(r"lab (\w+) is up", wait_for_line(process, "is up"))[1]
        process.kill()
        process.wait()
        assert len(lab_namespaces(run_id)) == 7  # SIGKILL: nothing could clean up
        result = run_testbed("cleanup")
        assert result.returncode == 0, result.stderr
        assert f"run {run_id}: removed" in result.stdout
        assert not lab_namespaces(run_id)
        assert len(lab_namespaces(kept_id)) == 3
        assert netns.NETNS_RUN_DIR.joinpath("vtb-user-owned").exists()
        assert "nothing to clean up" in run_testbed("cleanup").stdout
    finally:
        netns.remove("vtb-user-owned")
        run_testbed("lab", "down", kept_id)


def test_cleanup_all_removes_kept_labs(registry, no_leftovers):
    kept_id = re.search(r"run id (\w+)", run_testbed("lab", "up", str(MINIMAL)).stdout)[1]
    assert lab_namespaces(kept_id)
    assert run_testbed("cleanup", "--all").returncode == 0
    assert not lab_namespaces(kept_id)


def test_lab_commands_reject_unknown_runs_and_nodes(registry, no_leftovers):
    missing = run_testbed("lab", "down", "nosuch")
    assert missing.returncode == 2 and "no lab with run id 'nosuch'" in missing.stderr
    run_id = re.search(r"run id (\w+)", run_testbed("lab", "up", str(MINIMAL)).stdout)[1]
    try:
        wrong = run_testbed("lab", "exec", run_id, "clinet", "--", "true")
        assert wrong.returncode == 2 and "has no node 'clinet'" in wrong.stderr
    finally:
        run_testbed("lab", "down", run_id)


def test_doctor_reports_this_kernel(registry, no_leftovers):
    import json

    result = run_testbed("doctor", "--json")
    report = json.loads(result.stdout)
    capabilities = {c["name"]: c for c in report["capabilities"]}
    assert capabilities["root"]["available"] and capabilities["veth"]["available"]
    assert capabilities["htb"]["available"] and capabilities["u32"]["available"]
    for name in ("netem", "prio", "fq_codel", "ifb", "tbf", "iptables-dscp", "nftables", "docker", "espeak-ng"):
        assert name in capabilities
        if not capabilities[name]["available"]:
            assert capabilities[name]["remedy"] and capabilities[name]["disables"]
    assert result.returncode == (0 if report["ready"] else 3)


def test_a_python_lab_builds_the_router_template_lab_up_builds(registry, no_leftovers, tmp_path):
    """Without router_template, Lab resolves the scenario's own (the default, fifo; or a named one with
    overrides): the same router as the CLI's, which passes the loaded scenario's template."""
    scenario = tmp_path / "templates.yaml"
    scenario.write_text(
        "name: templates\nlinks: {wan: {router: {rate: 8mbit}}}\n"
        "variants:\n  plain: {}\n  voice: {router: {template: ef-priority, overrides: {burst: 3000}}}\n"
    )
    loaded = load_scenario(scenario)
    routers = {}
    for variant in ("plain", "voice"):
        built = []
        for template in (None, loaded.variant_templates[variant]):
            with Lab(loaded.variant(variant), registry=registry, router_template=template) as lab:
                router = lab.node("router")
                built.append(
                    (
                        lab.describe()["router"],
                        router.run(["tc", "class", "show", "dev", "wan"]).stdout,
                        router.run(["tc", "filter", "show", "dev", "lan"]).stdout,
                    )
                )
        from_python, from_cli = built
        assert from_python == from_cli
        routers[variant] = from_python[0]
    assert routers["plain"]["template"] == "No QoS; a single deep FIFO queue."
    assert set(routers["plain"]["classes"]["wan"].values()) == {"link", "all"}
    assert "voice" in routers["voice"]["classes"]["wan"].values()
