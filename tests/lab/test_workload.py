"""The workload over a lab: calls with cross traffic and a timeline, per-packet records from the taps,
a call into a full queue, and `testbed run` interrupted by Ctrl-C."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np

from testbed.lab import Lab, netns
from testbed.media.tap import extended_sequence, load_records
from testbed.scenario.load import load_template
from testbed.scenario.model import Scenario
from testbed.workload import Workload
from tests.helpers import REPO
from tests.helpers.lab import lab_namespaces, rest_of_output, start_testbed, wait_for_line

ROUTERS = REPO / "scenarios" / "routers"


def flooded(call: dict, flood: dict, timeline: list | None = None) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "flooded",
            "links": {"wan": {"router": {"rate": "10mbit"}}},
            "calls": [{"name": "call", "from": "client", "to": "gateway", **call}],
            "traffic": [
                {"name": "flood", "kind": "udp_cbr", "from": "client", "to": "gateway", "rate": "25mbit", **flood}
            ],
            "timeline": timeline or [],
        }
    )


def upstream_delay_per_second(result, out: Path) -> dict[int, float]:
    """Median one-way delay client -> gateway per second of the run: app send time to the gateway's tap."""
    sent = np.load(out / "calls" / "call-client-sent.npz")
    tap = load_records(result.taps["gateway/wan"])
    incoming = tap.stream(int(sent["ssrc"][0]), 0)
    sent_seq = extended_sequence(sent["seq"])
    arrived = dict(
        zip(
            extended_sequence(incoming.seq, reference=int(sent["seq"][0])).tolist(),
            incoming.time_ns.tolist(),
            strict=False,
        )
    )
    per_second: dict[int, list[float]] = {}
    for seq, send_ns in zip(sent_seq.tolist(), sent["send_ns"].tolist(), strict=False):
        if seq in arrived:
            second = int(send_ns / 1e9 - result.t0)
            per_second.setdefault(second, []).append((arrived[seq] - send_ns) / 1e6)
    return {second: float(np.median(delays)) for second, delays in sorted(per_second.items())}


def test_template_switch_shows_at_the_right_second(registry, no_leftovers, tmp_path):
    scenario = flooded(
        {"start": "0.5s", "duration": "9.5s"},
        {"start": "2s", "stop": "10s"},
        [{"at": "6s", "action": "set_router_template", "template": "ef-priority"}],
    )
    with Lab(scenario, registry=registry, router_template=load_template(ROUTERS / "fifo.yaml")) as lab:
        workload = Workload(
            lab, tmp_path, timeline_templates={"ef-priority": load_template(ROUTERS / "ef-priority.yaml")}
        )
        result = workload.run()
    switch = next(e for e in result.timeline if e.what.startswith("set_router_template"))
    assert abs(switch.effective - 6) < 0.5
    delays = upstream_delay_per_second(result, tmp_path)
    assert delays[1] < 5, delays  # idle link
    assert all(delays[s] > 200 for s in (3, 4)), delays  # the FIFO full of flood
    # (what was queued when the tree was replaced is lost: second 5 may have no packets at all)
    assert all(delays[s] < 5 for s in (7, 8)), delays  # EF priority from second 6 on
    changed = min(s for s in delays if s > 3 and delays[s] < 5)
    assert abs(changed - 6) <= 1, f"delay fell at second {changed}, the switch was at 6: {delays}"
    classes = {s.handle for s in result.queues if s.node == "router" and s.interface == "wan"}
    assert {"1:10", "1:11", "1:12"} <= classes, "queue samples cover the new template's classes"
    assert result.calls[0].outcome == "connected"


def test_call_into_a_full_fifo_fails_its_setup_not_the_run(registry, no_leftovers, tmp_path):
    scenario = flooded({"start": "2s", "duration": "4s", "setup_timeout": "2s"}, {"start": 0, "stop": "6s"})
    with Lab(scenario, registry=registry, router_template=load_template(ROUTERS / "fifo.yaml")) as lab:
        result = Workload(lab, tmp_path).run()
    call = result.calls[0]
    # ~1 s of FIFO upstream: ICE's first answer and each DTLS flight toward the gateway wait in it, so
    # setup needs 3 s or more, beyond the call's 2 s setup timeout
    assert call.outcome == "failed", call
    assert "setup timeout of 2s" in call.reason, call.reason
    assert all(side.error is None for side in call.sides.values()), "both sides hung up cleanly"
    assert result.traffic[0].sink_reports, "the flood was measured"


def test_ctrl_c_during_a_run_leaves_nothing(registry, no_leftovers, tmp_path):
    scenario = tmp_path / "interrupted.yaml"
    scenario.write_text(
        "name: interrupted\nlinks: {wan: {router: {rate: 10mbit, delay: 20ms}}}\n"
        "calls: [{from: client, to: gateway, duration: 30s}]\n"
        "traffic: [{name: bulk, kind: tcp_bulk, from: client, to: gateway, flows: 2}]\n"
    )
    process = start_testbed("run", str(scenario), "--out", str(tmp_path / "out"))
    # the call is up (the traffic, scheduled with it at 0 s, started before its connection was reported)
    wait_for_line(process, ": connected", timeout=90, stream="stderr")
    ours = {
        pid
        for run_id in registry.history()
        for namespace in lab_namespaces(run_id)
        for pid in netns.pids_in(netns.NETNS_RUN_DIR / namespace)
    }
    # a process's command line, and its name (the fork server's children: vtb-agent, vtb-engine)
    commands = {pid: _read(Path(f"/proc/{pid}/cmdline")) + b" " + _read(Path(f"/proc/{pid}/comm")) for pid in ours}
    assert any(b"vtb-agent" in c for c in commands.values()), "the run had agents (forked) to stop"
    assert any(b"testbed.lab.engine" in c for c in commands.values()), "and an impairment engine"
    assert any(b"vtb-tap" in c for c in commands.values()), "and taps (forked for the agents)"
    process.send_signal(signal.SIGINT)
    stderr = rest_of_output(process, timeout=60, stream="stderr")
    assert process.returncode == 130, stderr
    for run_id in registry.history():
        assert lab_namespaces(run_id) == set()
    survivors = [pid for pid in ours if Path(f"/proc/{pid}").exists()]
    assert survivors == [], f"processes of the run survived: {[commands[p] for p in survivors]}"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_run_writes_the_records(registry, no_leftovers, tmp_path):
    scenario = tmp_path / "short.yaml"
    scenario.write_text(
        "name: short\ncalls: [{from: client, to: gateway, duration: 3s, codec: pcmu}]\nvariants: {a: {}, b: {}}\n"
    )
    process = start_testbed("run", str(scenario), "--out", str(tmp_path / "out"))
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    for variant in ("a", "b"):
        workload = json.loads((tmp_path / "out" / variant / "workload.json").read_text())
        assert workload["calls"][0]["outcome"] == "connected"
        assert set(workload["taps"]) == {"client/lan", "gateway/wan"}
        for prefix in workload["taps"].values():
            assert Path(prefix + ".npz").exists() and Path(prefix + ".pcap").exists()
    assert "report.html" in stdout
