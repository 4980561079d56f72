"""The light call endpoint (``rtp``) with real packets: the call-centre scenario at a count this machine
carries in a test, symmetric RTP through a NAT that maps every flow to a random port, and the light
endpoint against aiortc on the same impaired link at the same time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

from testbed.media.tap import load_records
from tests.helpers import REPO
from tests.helpers.lab import run_testbed

MEDIA_PORTS = range(10000, 60001)


def _workload(out: Path, variant: str) -> dict:
    return json.loads((out / variant / "workload.json").read_text())


def _result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def test_call_centre_at_a_smaller_count(registry, no_leftovers, tmp_path):
    """scenarios/call-centre.yaml at 40 calls: its thresholds pass (ef-priority's p5 MOS >= 4.0, fifo's
    uplink median < 3); every light side sends RTCP about once a second from a port in 10000-60000,
    marks EF, and its sender kept to its clock; the taps lost nothing."""
    scenario = yaml.safe_load((REPO / "scenarios" / "call-centre.yaml").read_text())
    scenario["calls"][0].update(count=40, talk="8s")
    path = tmp_path / "call-centre-40.yaml"
    path.write_text(yaml.safe_dump(scenario))
    out = tmp_path / "out"
    done = run_testbed("run", str(path), "--out", str(out), timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = _result(out)
    checks = {check["variant"]: check for check in result["thresholds"]}
    assert checks["ef-priority"]["passed"] and checks["ef-priority"]["value"] >= 4.0, checks
    assert checks["fifo"]["passed"] and checks["fifo"]["value"] < 3.0, checks
    for variant in ("fifo", "ef-priority"):
        workload = _workload(out, variant)
        assert all(call["outcome"] == "connected" for call in workload["calls"])
        for call in workload["calls"]:
            for side in call["sides"].values():
                assert side["endpoint"] == "rtp"
                assert int(side["candidate_pair"]["local_port"]) in MEDIA_PORTS
                assert 7 <= side["rtcp"]["sent"] <= 10, side["rtcp"]  # 8 s of talk, one a second
                if variant == "ef-priority":  # in fifo RTCP shares the calls' fate (a call may lose all of it)
                    assert side["rtcp"]["received"] >= 6, side["rtcp"]
        stats_by_tap = workload["tap_stats"]
        assert set(stats_by_tap) == set(workload["taps"]) and all(s["dropped"] == 0 for s in stats_by_tap.values())
        client = load_records(workload["taps"]["client/lan"])
        sent = client.select(client.direction == 1)
        assert len(sent) > 40 * 8 * 50 * 0.95 and set(np.unique(sent.dscp).tolist()) == {46}
        # padded to SRTP's size: the tap's payload (past the RTP header) is the Opus payload plus the tag
        assert np.all(sent.payload >= 10 + 3)
        light = [e for key, e in workload["endpoints"].items() if e["kind"] == "rtp"]
        assert len(light) == 2 and all(e["datagrams_sent"] > 0 and e["mean_batch"] >= 1 for e in light)
        variant_result = next(v for v in result["variants"] if v["variant"] == variant)
        assert variant_result["harness"]["light_pacing_p99_ms"] is not None
        assert variant_result["harness"]["tap_dropped"] == 0
        assert variant_result["distribution"]["directions"] == 80


NAT = """name: light-nat
calls:
  - {name: rep, from: client, to: gateway, count: 3, talk: 4s, endpoint: {from: rtp, to: rtp}}
variants:
  symmetric: {description: a random port per flow, router: {template: nat-symmetric}}
"""


def test_the_gateway_answers_where_the_packets_come_from_behind_a_symmetric_nat(registry, no_leftovers, tmp_path):
    """Behind a NAT that maps the call to a random port, the gateway side latches on the router's public
    address and that port, as media servers do; both directions arrive whole."""
    path = tmp_path / "nat.yaml"
    path.write_text(NAT)
    out = tmp_path / "out"
    done = run_testbed("run", str(path), "--out", str(out), timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    workload = _workload(out, "symmetric")
    nodes = json.loads((out / "symmetric" / "lab.json").read_text())["nodes"]
    router_wan = nodes["router"]["interfaces"]["wan"].split("/")[0]
    client = nodes["client"]["interfaces"]["lan"].split("/")[0]
    mapped_ports = []
    for call in workload["calls"]:
        assert call["outcome"] == "connected", call["reason"]
        caller, callee = call["sides"]["caller"], call["sides"]["callee"]
        address, port = callee["candidate_pair"]["remote"].rsplit(":", 1)
        assert address == router_wan != client, callee["candidate_pair"]
        mapped_ports.append(int(port) != int(caller["candidate_pair"]["local_port"]))
        assert caller["packets_received"] >= 0.95 * callee["packets_sent"] > 150
        assert callee["packets_received"] >= 0.95 * caller["packets_sent"] > 150
    assert any(mapped_ports), "the symmetric NAT kept every port: nothing was latched"
    scored = [d for call in _result(out)["variants"][0]["calls"] for d in call["directions"].values()]
    assert len(scored) == 6 and all(d["mos_emodel"] > 4.0 for d in scored)


SIDE_BY_SIDE = """name: light-vs-aiortc
links:
  wan:
    router: {delay: 30ms, jitter: 5ms, loss: 2%}
calls:
  - {name: light, from: client, to: gateway, talk: 32s, endpoint: {from: rtp, to: rtp}}
  - {name: webrtc, from: client, to: gateway, talk: 32s}
"""


def test_a_light_call_and_an_aiortc_call_see_the_same_network(registry, no_leftovers, tmp_path):
    """On one impaired link at the same time (2% loss, 30 ms +- 5 ms) for 32 s: the uplink's loss counts
    agree (each within the binomial 99% interval at their pooled rate), the median one-way delays within
    1 ms and the E-model MOS within 0.15."""
    path = tmp_path / "side-by-side.yaml"
    path.write_text(SIDE_BY_SIDE)
    out = tmp_path / "out"
    done = run_testbed("run", str(path), "--out", str(out), timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    calls = {call["id"]: call for call in _result(out)["variants"][0]["calls"]}
    uplink = {name: calls[name]["directions"]["client->gateway"] for name in ("light", "webrtc")}
    light, webrtc = uplink["light"]["network"], uplink["webrtc"]["network"]
    sent, lost = light["loss"]["sent"], light["loss"]["lost"]
    assert sent > 1500 and webrtc["loss"]["sent"] > 1500
    # the same loss probability for both: each count within the 99% binomial interval at the pooled rate
    pooled = (lost + webrtc["loss"]["lost"]) / (sent + webrtc["loss"]["sent"])
    for name, figures in (("light", light), ("aiortc", webrtc)):
        low, high = stats.binom.interval(0.99, figures["loss"]["sent"], pooled)
        print(f"uplink loss {name}: {figures['loss']['lost']}/{figures['loss']['sent']}, 99% interval at the "
              f"pooled {pooled:.2%}: {low:.0f}-{high:.0f}")  # fmt: skip
        assert low <= figures["loss"]["lost"] <= high, name
    delays = (light["delay"]["p50_ms"], webrtc["delay"]["p50_ms"])
    assert abs(delays[0] - delays[1]) <= 1.0, delays
    mos = (uplink["light"]["mos_emodel"], uplink["webrtc"]["mos_emodel"])
    print(f"median one-way delay {delays}, E-model {mos}")
    assert abs(mos[0] - mos[1]) <= 0.15, mos


CAPACITY = """name: light-capacity
links:
  wan:
    router: {rate: 2mbit}
calls:
  - {name: rep, from: client, to: gateway, talk: 3s, endpoint: {from: rtp, to: rtp}}
"""


def test_capacity_with_light_calls_meets_the_links_theoretical_count(registry, no_leftovers, tmp_path):
    """`testbed capacity` with light calls on a 2 Mbit uplink (no cross traffic): the count it measures
    is within a few calls of what it prints as the link's theoretical count (link rate / a call's wire
    rate), because nothing but the calls share the link (measured: 40 of 40)."""
    path = tmp_path / "capacity.yaml"
    path.write_text(CAPACITY)
    out = tmp_path / "out"
    done = run_testbed("capacity", str(path), "--min-mos", "4.0", "--out", str(out), "--json", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (found,) = json.loads(done.stdout)
    print({key: found[key] for key in ("calls", "call_bps", "link_bps", "theoretical")})
    assert found["link_bps"] == 2_000_000 and 40_000 < found["call_bps"] < 60_000  # 49 kbit/s for Opus
    assert found["theoretical"] == 2_000_000 // found["call_bps"]
    # one call over the link's rate overloads it by ~2%: in 3 s of talk the queue may not yet hurt MOS
    assert found["theoretical"] - 4 <= found["calls"] <= found["theoretical"] + 1, found
