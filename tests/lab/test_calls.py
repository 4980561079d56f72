"""Real WebRTC calls between agents in lab nodes: codecs, DSCP classes, received packets, audio that
arrives in the right direction, and agents that leave nothing behind."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from aiortc import RTCRtpCodecParameters
from aiortc.codecs import get_decoder
from aiortc.jitterbuffer import JitterFrame

from testbed.lab import Lab, netns
from testbed.media.clips import load_clip
from testbed.media.encoded_clip import aiortc_capability
from testbed.scenario.load import load_template
from testbed.scenario.model import Scenario
from testbed.workload.agents import Agents
from testbed.workload.call_plan import Call
from testbed.workload.calls import on_call_event, place_calls
from testbed.workload.hangup import end_calls
from tests.helpers import REPO
from tests.helpers.qos import class_packets

EF_PRIORITY = load_template(REPO / "scenarios" / "routers" / "ef-priority.yaml")


def bottleneck() -> Scenario:
    return Scenario.model_validate({"name": "calls", "links": {"wan": {"router": {"rate": "10mbit"}}}})


def run_call(lab: Lab, out: Path, *, codec: str = "opus", dscp: int = 46, seconds: float = 5) -> Call:
    """Place one call client -> gateway, keep it up for ``seconds``, hang up; the record has both sides."""
    call = Call(
        id=f"{codec}-{dscp}",
        name="test",
        caller="client",
        callee="gateway",
        codec=codec,
        dscp=dscp,
        start=0,
        duration=seconds,
        setup_timeout=10,
    )
    with Agents(lab.nodes) as agents:
        place_calls(agents, [call], out)
        end = time.time() + seconds
        while time.time() < end:
            for node, _, message in agents.drain_events():
                on_call_event(call, node, message)
            time.sleep(0.05)
        end_calls(agents, [call])
        pids = [client.process.pid for client in agents.clients.values()]
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids), "agents exited with their calls"
    return call


def received(call: Call, side: str) -> dict[str, np.ndarray]:
    return dict(np.load(call.sides[side].received_file))


def decoded_audio(codec: str, packets: dict[str, np.ndarray]) -> np.ndarray:
    """The received payloads decoded in order (no concealment), as mono 16-bit samples."""
    capability = aiortc_capability(codec)
    decoder = get_decoder(
        RTCRtpCodecParameters(
            mimeType=capability.mimeType, clockRate=capability.clockRate, channels=capability.channels, payloadType=0
        )
    )
    offsets = np.concatenate([[0], np.cumsum(packets["payload_sizes"])])
    chunks = []
    for index in np.argsort(packets["seq"], kind="stable"):
        payload = packets["payload"][offsets[index] : offsets[index + 1]].tobytes()
        for frame in decoder.decode(JitterFrame(payload, int(packets["rtp_ts"][index]))):
            samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
            chunks.append(samples[:: frame.sample_rate // 8000])  # 8 kHz is plenty to recognise speech
    return np.concatenate(chunks).astype(np.float64)


def envelope(samples: np.ndarray, rate: int = 8000) -> np.ndarray:
    frame = rate // 50
    usable = len(samples) // frame * frame
    return np.sqrt(np.mean(samples[:usable].reshape(-1, frame) ** 2, axis=1))


def similarity(audio: np.ndarray, clip_role: str) -> float:
    """Best normalised correlation of 20 ms energy envelopes: 1 = the same speech, ~0 = unrelated."""
    reference = envelope(np.tile(load_clip(clip_role, 8000).astype(np.float64), 2))
    heard = envelope(audio)
    heard = (heard - heard.mean()) / (heard.std() or 1)
    best = 0.0
    for lag in range(0, len(reference) - len(heard) + 1, 1):
        window = reference[lag : lag + len(heard)]
        window = (window - window.mean()) / (window.std() or 1)
        best = max(best, float(np.mean(heard * window)))
    return best


def test_opus_call_lands_in_the_ef_class_both_ways_without_loss(registry, no_leftovers, tmp_path):
    with Lab(bottleneck(), registry=registry, router_template=EF_PRIORITY) as lab:
        call = run_call(lab, tmp_path, seconds=10)
        upstream, downstream = class_packets(lab, "wan"), class_packets(lab, "lan")
    assert call.outcome == "connected" and call.setup_s < 2
    for side in ("caller", "callee"):
        packets = received(call, side)
        sent = call.sides["callee" if side == "caller" else "caller"].frames_sent
        assert len(packets["seq"]) >= sent - 2, f"{side} received {len(packets['seq'])} of {sent}"
        gaps = np.diff(np.sort(packets["seq"].astype(np.int64)) % 65536)
        assert np.all((gaps == 1) | (gaps == -65535)), "no sequence number missing"
    assert upstream["voice"] >= 490 and downstream["voice"] >= 490, (upstream, downstream)
    assert upstream["bulk"] < 10 and downstream["bulk"] < 10


@pytest.mark.parametrize("codec", ["opus", "pcmu", "pcma", "g722"])
def test_each_codec_carries_each_clip_its_own_way(registry, no_leftovers, tmp_path, codec):
    with Lab(bottleneck(), registry=registry) as lab:
        call = run_call(lab, tmp_path, codec=codec, seconds=6)
    assert call.outcome == "connected"
    at_gateway = decoded_audio(codec, received(call, "callee"))  # what the client sent
    at_client = decoded_audio(codec, received(call, "caller"))
    assert len(at_gateway) > 8000 * 5 and len(at_client) > 8000 * 5
    assert similarity(at_gateway, "client") > 0.8 > similarity(at_gateway, "gateway") + 0.2
    assert similarity(at_client, "gateway") > 0.8 > similarity(at_client, "client") + 0.2


def test_unmarked_call_lands_in_the_default_class(registry, no_leftovers, tmp_path):
    with Lab(bottleneck(), registry=registry, router_template=EF_PRIORITY) as lab:
        run_call(lab, tmp_path, dscp=0, seconds=3)
        upstream = class_packets(lab, "wan")
    assert upstream["voice"] == 0 and upstream["bulk"] >= 140


def test_agents_leave_no_process_in_the_nodes(registry, no_leftovers, tmp_path):
    with Lab(bottleneck(), registry=registry) as lab:
        run_call(lab, tmp_path, seconds=2)
        left = {name: netns.pids_in(node.netns_path) for name, node in lab.nodes.items()}
    assert all(not pids for pids in left.values()), left
