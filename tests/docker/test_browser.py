"""A browser call in the Docker backend: Chromium inside the client container (the node image has it)
calls the aiortc gateway container, both directions score well, and nothing outlives the run (the
``no_leftovers`` fixture also checks that no browser process remains, containers' included)."""

from __future__ import annotations

import json

import pytest

from testbed.lab.backends.docker import RUN_LABEL
from tests.helpers.lab import run_testbed

pytestmark = pytest.mark.docker

SCENARIO = """name: browser-docker
backend: docker
calls:
  - {name: rep, from: client, to: gateway, duration: 10s, endpoint: {from: chromium}}
"""


def test_a_browser_call_in_containers(engine, registry, no_leftovers, tmp_path):
    scenario = tmp_path / "browser.yaml"
    scenario.write_text(SCENARIO)
    result = run_testbed("run", str(scenario), "--out", str(tmp_path / "out"), "--json", timeout=300)
    assert result.stdout, result.stderr
    data = json.loads(result.stdout)
    assert data["environment"]["backend"] == ["docker"]
    call = data["variants"][0]["calls"][0]
    assert call["outcome"] == "connected", call["reason"]
    for label, direction in call["directions"].items():
        assert direction["mos_pesq"] >= 3.8, (label, direction["mos_pesq"], direction["pesq_note"])
        assert direction["dscp"]["marked_ef"] >= 0.99, (label, direction["dscp"])
    heard = call["directions"]["gateway->client"]
    assert heard["listener"] == "chromium" and heard["browser"]["version"].startswith("Chromium ")
    workload = json.loads((tmp_path / "out" / "default" / "workload.json").read_text())
    browser_leg = workload["calls"][0]["sides"]["caller"]
    assert browser_leg["endpoint"] == "chromium" and browser_leg["launch_s"] > 0
    containers = engine.containers.list(all=True, filters={"label": RUN_LABEL})
    assert [c.name for c in containers if c.labels.get(RUN_LABEL) in registry.history()] == []
