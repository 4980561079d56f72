"""The end of a call for real: over a lossless path with 600 ms one way, the harness stops the media,
waits until the path has drained, then hangs up; nothing that was on the path counts as lost, and a
call asked for its talk time talks that long whatever its setup took."""

from __future__ import annotations

import json

from tests.helpers.lab import run_testbed

SLOW = """name: slow
links:
  wan:
    router: {delay: 600ms}
    gateway: {delay: 600ms}
calls:
  - {name: rep, from: client, to: gateway, %s}
"""


def test_a_slow_lossless_path_drains_before_hang_up(registry, no_leftovers, tmp_path):
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(SLOW % "talk: 6s")
    out = tmp_path / "out"
    result = run_testbed("run", str(scenario), "--out", str(out), "--json", timeout=180)
    assert result.stdout, result.stderr
    call = json.loads(result.stdout)["variants"][0]["calls"][0]
    assert call["outcome"] == "connected", call["reason"]
    assert call["drain_s"] >= 0.6, call["drain_s"]  # the last packets took 600 ms to arrive
    assert 5.9 <= call["talk_s"] <= 6.5, call["talk_s"]  # setup took seconds; talk is what was asked
    assert call["setup_s"] > 1.2  # ICE and DTLS round trips over 1.2 s of RTT
    for label, direction in call["directions"].items():
        network = direction["network"]
        assert network["loss"]["lost"] == 0, (label, network["loss"])
        assert network["in_flight"] == 0, (label, network["in_flight"])
        assert network["loss"]["sent"] >= 290, (label, network["loss"])


def test_a_call_with_the_users_own_speech(registry, no_leftovers, tmp_path):
    """References the user owns (here: the shipped clips as 48 kHz stereo WAVs, as a recording would
    come) are converted into the run directory, sent by both sides and scored against themselves."""
    import wave

    import numpy as np

    from testbed.media.clips import load_clip

    for role in ("client", "gateway"):
        clip = load_clip(role, 16000).astype(np.float64)
        upsampled = np.interp(np.arange(0, clip.size, 1 / 3), np.arange(clip.size), clip)
        with wave.open(str(tmp_path / f"{role}-talk.wav"), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(48000)
            w.writeframes(np.repeat(upsampled, 2).astype("<i2").tobytes())
    scenario = tmp_path / "mine.yaml"
    scenario.write_text(
        "name: mine\ncalls:\n  - {name: rep, talk: 6s, speech: {from: client-talk.wav, to: gateway-talk.wav}}\n"
    )
    out = tmp_path / "out"
    result = run_testbed("run", str(scenario), "--out", str(out), "--json", timeout=180)
    assert result.stdout, result.stderr
    call = json.loads(result.stdout)["variants"][0]["calls"][0]
    for label, direction in call["directions"].items():
        assert direction["mos_pesq"] > 3.5, (label, direction["mos_pesq"])
    workload = json.loads((out / "default" / "workload.json").read_text())["calls"][0]
    assert workload["sides"]["caller"]["clip"].startswith(str(out / "default" / "speech"))
    assert (out / "default" / "speech" / "1-client-talk-16k.wav").exists()


def test_calls_that_talk_in_turns(registry, no_leftovers, tmp_path):
    """ITU-T P.59 conversations: each call of the group has its own pattern; silence goes on the wire as
    Opus' small frames, so a side sends far less than a continuous talker, and PESQ scores what was said."""
    import numpy as np

    scenario = tmp_path / "turns.yaml"
    scenario.write_text("name: turns\ncalls:\n  - {name: rep, count: 2, talk: 8s, speech: {pattern: conversation}}\n")
    out = tmp_path / "out"
    result = run_testbed("run", str(scenario), "--out", str(out), "--json", timeout=180)
    assert result.stdout, result.stderr
    calls = json.loads(result.stdout)["variants"][0]["calls"]
    records = json.loads((out / "default" / "workload.json").read_text())["calls"]
    assert records[0]["activity"] != records[1]["activity"]  # each call its own conversation
    for call, record in zip(calls, records, strict=True):
        assert call["outcome"] == "connected", call["reason"]
        assert record["pattern"] == "conversation"
        assert 0.15 < record["activity"]["caller"] < 0.8 and 0.15 < record["activity"]["callee"] < 0.8, record
        for label, direction in call["directions"].items():
            assert direction["mos_pesq"] > 3.0, (label, direction["mos_pesq"])
        sizes = np.load(record["sides"]["callee"]["received_file"])["payload_sizes"]
        quiet = float((sizes < 10).mean())  # Opus frames of silence are a few bytes
        assert 0.15 < quiet < 0.85, quiet
        assert sizes.mean() < 50, sizes.mean()  # a continuous talker: about 60-66 bytes
