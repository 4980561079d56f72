"""Pure parts of browser calls: the scenario's endpoint sides and their marking, the microphone file,
Chrome's figures from getStats(), the played audio cut to the talk time, send times for a sender
without a send log, and the DSCP a sender put on the wire."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from testbed.media.clips import load_clip
from testbed.media.endpoints.chromium_browser import LEAD_S, MARGIN_S, microphone_file
from testbed.media.tap.records import TapRecords, empty_columns
from testbed.rescore import _sent_from_taps, dscp_on_wire
from testbed.scenario.model import Scenario
from testbed.scoring.browser import BrowserListener, browser_figures, played_span, talk_span, uniform_rate
from testbed.workload.call_plan import expand_calls


def scenario(call: dict) -> Scenario:
    return Scenario.model_validate({"name": "s", "calls": [call]})


def test_a_browser_side_asks_high_priority_by_default_and_aiortc_keeps_the_calls_dscp():
    calls = expand_calls(scenario({"dscp": 0, "endpoint": {"from": "aiortc", "to": "aiortc"}}).calls)
    assert calls[0].marking["caller"] == {"dscp": 0, "network_priority": "unset"}
    calls = expand_calls(scenario({"endpoint": {"from": "chromium"}}).calls)
    assert calls[0].endpoints == {"caller": "chromium", "callee": "aiortc"}
    assert calls[0].marking == {
        "caller": {"dscp": 0, "network_priority": "high"},
        "callee": {"dscp": 46, "network_priority": "unset"},
    }
    leg = calls[0].leg("caller", Path("/tmp"))
    assert leg["network_priority"] == "high"


def test_each_side_can_say_how_it_marks():
    spec = scenario(
        {
            "endpoint": {
                "from": {"kind": "chromium", "network_priority": "unset"},
                "to": {"kind": "aiortc", "dscp": "AF41"},
            }
        }
    )
    call = expand_calls(spec.calls)[0]
    assert call.marking["caller"]["network_priority"] == "unset"
    assert call.marking["callee"]["dscp"] == 34


@pytest.mark.parametrize(
    "call, words",
    [
        ({"dscp": "EF", "endpoint": {"from": "chromium"}}, ["network_priority", "chromium"]),
        ({"endpoint": {"from": {"kind": "chromium", "dscp": 46}}}, ["network_priority"]),
        ({"endpoint": {"to": {"kind": "aiortc", "network_priority": "high"}}}, ["browser", "dscp"]),
        ({"endpoint": {"from": {"kind": "chromium", "network_priority": "urgent"}}}, ["network_priority"]),
        ({"endpoint": {"from": "firefox"}}, ["aiortc", "chromium"]),
    ],
)
def test_marking_that_does_not_fit_the_kind_is_refused(call, words):
    with pytest.raises(ValidationError) as error:
        scenario(call)
    for word in words:
        assert word in str(error.value), (word, str(error.value))


STATS = {
    "packetsReceived": 500,
    "packetsLost": 10,
    "packetsDiscarded": 2,
    "jitter": 0.004,
    "jitterBufferDelay": 24_000.0,  # seconds, summed over every emitted sample
    "jitterBufferEmittedCount": 480_000,
    "jitterBufferTargetDelay": 19_200.0,
    "totalSamplesReceived": 480_000,
    "concealedSamples": 9_600,
    "silentConcealedSamples": 0,
    "concealmentEvents": 10,
    "insertedSamplesForDeceleration": 960,
    "removedSamplesForAcceleration": 480,
    "fecPacketsReceived": 5,
    "fecPacketsDiscarded": 1,
}


def listener(chunks: int = 100, inbound: dict | None = None) -> BrowserListener:
    """``chunks`` 10 ms chunks at 48 kHz read 10 ms apart from t = 1 s; chunk k holds the value k."""
    audio = np.repeat(np.arange(chunks, dtype=np.int16), 480)
    return BrowserListener(
        audio=audio,
        rate=48_000,
        lengths=np.full(chunks, 480, np.int64),
        read_ns=1_000_000_000 + np.arange(chunks, dtype=np.int64) * 10_000_000,
        inbound=STATS if inbound is None else inbound,
        pair={"local_type": "relay", "remote_type": "host", "protocol": "udp", "relay_protocol": "tls"},
        version="Chromium 156",
    )


def test_chromes_figures_are_its_getstats_ratios():
    figures = browser_figures(listener())
    assert figures.mean_jitter_buffer_ms == pytest.approx(50.0)  # 24 000 s of delay over 480 000 samples
    assert figures.target_jitter_buffer_ms == pytest.approx(40.0)
    assert figures.concealed_fraction == pytest.approx(0.02)
    assert figures.jitter_ms == pytest.approx(4.0)
    assert (figures.packets_lost, figures.fec_packets_received, figures.inserted_samples) == (10, 5, 960)
    assert figures.candidate_pair == {
        "local_type": "relay",
        "remote_type": "host",
        "protocol": "udp",
        "relay_protocol": "tls",
    }


def test_figures_of_a_listener_that_heard_nothing_are_none_not_a_division_by_zero():
    figures = browser_figures(listener(inbound={}))
    assert figures.mean_jitter_buffer_ms is None and figures.concealed_fraction is None
    assert figures.packets_received == 0


def test_the_played_audio_is_cut_to_the_chunks_read_in_the_span():
    played = played_span(listener(), 1_200_000_000, 1_295_000_000)  # chunks 20..29
    assert played.size == 10 * 480 and played[0] == 20 and played[-1] == 29
    assert played_span(listener(), 5_000_000_000, 6_000_000_000).size == 0


def test_the_talk_span_runs_from_the_first_arrival_to_the_last_plus_chromes_buffer():
    arrivals = np.array([1_300_000_000, 1_500_000_000], np.int64)
    played = talk_span(listener(), arrivals)  # 1.3 s .. 1.5 s + 50 ms buffer - 20 ms = 1.53 s
    assert played[0] == 30 and played[-1] == 53


def taps(**columns) -> TapRecords:
    base = empty_columns()
    size = len(next(iter(columns.values())))
    for name, kind in ((n, c.dtype) for n, c in base.items()):
        base[name] = np.asarray(columns.get(name, np.zeros(size)), dtype=kind)
    return TapRecords(**base)


def test_a_browser_senders_send_times_are_its_interface_taps():
    departures = taps(seq=[1, 2, 3], time_ns=[10, 20, 30], rtp_ts=[0, 960, 1920])
    sent, source = _sent_from_taps(departures, None, 48_000)
    assert source == "sender's interface tap" and sent.send_ns.tolist() == [10, 20, 30]


def test_without_the_senders_tap_send_times_come_from_rtp_timestamps_anchored_at_the_fastest_packet():
    # 20 ms packets; transit 5 ms except the second (12 ms); the fourth arrives before the third. The
    # constant part of the delay cannot be known: the fastest packet is taken to have had none
    arrivals = taps(
        seq=[65535, 0, 2, 1],
        rtp_ts=[4294966336, 0, 1920, 960],
        time_ns=[5_000_000, 32_000_000, 65_000_000, 46_000_000],
    )
    sent, source = _sent_from_taps(None, arrivals, 48_000)
    assert source.startswith("RTP timestamps")
    assert sent.seq.tolist() == [65535, 0, 1, 2]  # in sequence order, across the wrap
    assert sent.send_ns.tolist() == [5_000_000, 25_000_000, 45_000_000, 65_000_000]


def test_dscp_on_the_wire_counts_what_the_sender_marked():
    assert dscp_on_wire(None) == {}
    marked = dscp_on_wire(taps(dscp=[46, 46, 46, 0], seq=[1, 2, 3, 4]))
    assert marked == {"packets": 4, "marked_ef": 0.75, "values": {"0": 0.25, "46": 0.75}}


def test_chunks_at_mixed_rates_come_out_at_the_rate_most_of_the_audio_has():
    # 0.1 s of 48 kHz silence before the first packet, then 1 s of a 400 Hz tone at 8 kHz (G.711)
    tone = (8000 * np.sin(2 * np.pi * 400 * np.arange(8000) / 8000)).astype(np.int16)
    audio = np.concatenate([np.zeros(4800, np.int16), tone])
    lengths = np.array([480] * 10 + [80] * 100, np.int64)
    rates = np.array([48_000] * 10 + [8000] * 100, np.int64)
    uniform, new_lengths, rate = uniform_rate(audio, lengths, rates)
    assert rate == 8000 and new_lengths.tolist() == [80] * 110
    assert uniform.size == 8800 and np.array_equal(uniform[800:], tone)
    same, same_lengths, same_rate = uniform_rate(tone, np.array([80] * 100, np.int64), np.array([8000] * 100))
    assert same_rate == 8000 and same is tone


def test_the_microphone_file_never_loops_during_a_call(tmp_path):
    """Chromium's fake device does not loop its file seamlessly: the file repeats the sender's period
    (2 s of silence, the clip, silence to whole frames) for the call and a margin instead."""
    path, period_frames = microphone_file(tmp_path, "opus", "client", seconds=60)
    with wave.open(str(path)) as mic:
        rate, samples = mic.getframerate(), np.frombuffer(mic.readframes(mic.getnframes()), "<i2")
    clip = load_clip("client", rate)
    period = period_frames * rate // 50
    assert rate == 16000 and samples.size % period == 0 and samples.size >= (60 + MARGIN_S) * rate
    lead = int(LEAD_S * rate)
    assert not samples[:lead].any() and np.array_equal(samples[lead : lead + clip.size], clip)
    assert np.array_equal(samples[:period], samples[-period:])


def test_a_group_call_starts_its_microphone_at_its_own_offset(tmp_path):
    """Calls of a ``count: N`` group start their clips at their own points, browsers as aiortc senders:
    the file is the same period rotated by whole frames, so PESQ's looped reference still fits."""
    path, frames = microphone_file(tmp_path, "opus", "client", seconds=10)
    moved, moved_frames = microphone_file(tmp_path, "opus", "client", seconds=10, offset=0.5)
    read = []
    for file in (path, moved):
        with wave.open(str(file)) as mic:
            read.append(np.frombuffer(mic.readframes(mic.getnframes()), "<i2"))
    start = (frames // 2) * 320
    assert moved != path and moved_frames == frames
    assert np.array_equal(read[1][: frames * 320], np.roll(read[0][: frames * 320], -start))
