"""Light (rtp) calls in the Docker backend: the engine's raw socket and sendmmsg work inside an
unprivileged container (Docker's default NET_RAW), both directions arrive whole and mark EF, and the
light senders' lateness is reported (containers cannot take a real-time class themselves; the harness
promotes only each agent's main thread from the host, so the figure says how the sender fared)."""

from __future__ import annotations

import json

import pytest

from testbed.lab.backends.docker import RUN_LABEL
from tests.helpers.lab import run_testbed

pytestmark = pytest.mark.docker

SCENARIO = """name: light-docker
backend: docker
calls:
  - {name: rep, from: client, to: gateway, count: 20, talk: 6s, endpoint: {from: rtp, to: rtp}}
"""


def test_light_calls_in_containers(engine, registry, no_leftovers, tmp_path):
    scenario = tmp_path / "light.yaml"
    scenario.write_text(SCENARIO)
    result = run_testbed("run", str(scenario), "--out", str(tmp_path / "out"), "--json", timeout=300)
    assert result.stdout, result.stderr
    data = json.loads(result.stdout)
    assert data["environment"]["backend"] == ["docker"]
    calls = data["variants"][0]["calls"]
    assert len(calls) == 20 and all(call["outcome"] == "connected" for call in calls)
    for call in calls:
        for label, direction in call["directions"].items():
            assert direction["network"]["loss"]["fraction"] < 0.01, (call["id"], label)
            assert direction["mos_emodel"] > 4.0, (call["id"], label)
            assert direction["dscp"]["marked_ef"] >= 0.99, (call["id"], label, direction["dscp"])
    workload = json.loads((tmp_path / "out" / "default" / "workload.json").read_text())
    light = [stats for stats in workload["endpoints"].values() if stats["kind"] == "rtp"]
    assert len(light) == 2 and all(stats["pacing"]["p50_ms"] < 5 for stats in light), light
    assert data["variants"][0]["harness"]["light_pacing_p99_ms"] is not None
    containers = engine.containers.list(all=True, filters={"label": RUN_LABEL})
    assert [c.name for c in containers if c.labels.get(RUN_LABEL) in registry.history()] == []
