"""The vendor's cloud side in the Docker backend: coturn and the WSS signalling service run inside their
containers (the node image has coturn), an office firewall that blocks UDP sends the call through TURN
over TLS on 443, and no container, process or certificate outlives the run."""

from __future__ import annotations

import json

import pytest

from testbed.lab.backends.docker import RUN_LABEL
from tests.helpers import REPO
from tests.helpers.lab import run_testbed

pytestmark = pytest.mark.docker


def test_turn_and_signalling_in_containers(engine, registry, no_leftovers, tmp_path):
    # the services are the point here, not the WAN's loss: without it the relayed call must sound clean
    text = (REPO / "scenarios" / "firewall.yaml").read_text().replace("duration: 10s", "duration: 5s")
    text = text.replace(", loss: 1%", "")
    scenario = tmp_path / "firewall.yaml"
    scenario.write_text(text.replace("name: firewall\n", "name: firewall-docker\nbackend: docker\n"))
    out = tmp_path / "out"
    result = run_testbed("run", str(scenario), "--variant", "udp-blocked", "--out", str(out), "--json", timeout=300)
    assert result.stdout, result.stderr
    data = json.loads(result.stdout)
    assert data["environment"]["backend"] == ["docker"]
    call = data["variants"][0]["calls"][0]
    assert call["outcome"] == "connected", call["reason"]
    assert call["path"]["relay_protocol"] == "tls" and call["path"]["turn_required"] is True
    for label, direction in call["directions"].items():
        assert direction["mos_pesq"] is not None and direction["mos_pesq"] > 3.5, (label, direction["mos_pesq"])
    lab = json.loads((out / "udp-blocked" / "lab.json").read_text())
    assert lab["backend"] == "docker" and lab["turn"]["node"] == "turn" and lab["signalling"]["node"] == "gateway"
    caller = json.loads((out / "udp-blocked" / "workload.json").read_text())["calls"][0]["sides"]["caller"]
    assert caller["timings"]["signalling_s"] > 0
    assert "ALLOCATE processed, success" in (out / "udp-blocked" / "turnserver.log").read_text()
    assert engine.containers.list(all=True, filters={"label": RUN_LABEL}) == []
