"""The playout model: jitter buffers, late and lost frames, concealment, the listener's timeline."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from testbed.media.encoded_clip import encoded_clip
from testbed.media.records import PacketRecord
from testbed.scoring.decode import alaw_decode, decode_frames, ulaw_decode
from testbed.scoring.playout import (
    LATE,
    LOST,
    PLAYED,
    AdaptiveBuffer,
    FixedBuffer,
    ReceivedPackets,
    playout,
    schedule,
    simulate_arrivals,
)

FRAMES_60S = 3000


def netem_jitter(n, base_ms, jitter_ms, seed):
    """netem-style ``delay base jitter``: uniform in base +- jitter, packets may overtake each other."""
    return base_ms + np.random.default_rng(seed).uniform(-jitter_ms, jitter_ms, n)


def test_one_percent_random_loss_without_jitter_loses_about_one_percent_of_the_audio():
    payloads = encoded_clip("pcmu", "client")
    lost = np.random.default_rng(11).random(FRAMES_60S) < 0.01
    lost[[0, -1]] = False
    result = playout(simulate_arrivals(payloads, "pcmu", np.full(FRAMES_60S, 35.0), lost), "pcmu")
    assert result.late == 0
    assert result.lost == lost.sum()
    assert 0.005 <= result.effective_loss <= 0.02
    assert result.concealed == result.lost
    assert result.audio.size == FRAMES_60S * 160 and result.rate == 8000


def test_jitter_of_40ms_makes_a_30ms_fixed_buffer_late_but_not_a_120ms_one():
    payloads = encoded_clip("opus", "client")
    packets = simulate_arrivals(payloads, "opus", netem_jitter(1000, 60, 40, seed=3))
    shallow = schedule(packets, "opus", FixedBuffer(30))
    deep = schedule(packets, "opus", FixedBuffer(120))
    assert shallow.count(LOST) == deep.count(LOST) == 0
    assert shallow.count(LATE) > 100  # a large share of frames misses a 30 ms buffer under +-40 ms jitter
    assert deep.count(LATE) == 0  # 120 ms covers the whole 80 ms spread whatever the first packet's delay
    shallow_play = playout(packets, "opus", FixedBuffer(30))
    assert shallow_play.effective_loss == pytest.approx(shallow.count(LATE) / shallow.frames)
    assert playout(packets, "opus", FixedBuffer(120)).effective_loss == 0


def test_adaptive_buffer_follows_the_jitter():
    payloads = encoded_clip("pcma", "gateway")
    calm = playout(simulate_arrivals(payloads, "pcma", np.full(1000, 30.0)), "pcma")
    delays = netem_jitter(1000, 60, 40, seed=4)
    jittery = playout(simulate_arrivals(payloads, "pcma", delays), "pcma")
    assert calm.effective_loss == 0
    assert 20 <= calm.mean_buffer_delay_ms < 25  # settles at the 20 ms floor after NetEq's 80 ms start
    # NetEq aims at the 95th percentile of 500 ms maxima: steady +-40 ms jitter costs delay, not audio
    assert jittery.effective_loss < 0.01
    assert 30 < jittery.mean_buffer_delay_ms < 80
    fixed = playout(simulate_arrivals(payloads, "pcma", delays), "pcma", FixedBuffer(30))
    assert fixed.late > 100 > jittery.late


def test_adaptive_buffer_never_goes_beyond_its_maximum():
    payloads = encoded_clip("pcmu", "client")
    delays = np.full(500, 30.0)
    delays[100:300:3] = 400  # a third of the packets 370 ms late for 4 s: beyond a 200 ms maximum
    sched = schedule(simulate_arrivals(payloads, "pcmu", delays), "pcmu", AdaptiveBuffer(max_ms=200))
    assert sched.count(LATE) >= 60  # the spikes cannot be absorbed
    assert np.nanmax(sched.wait_ms) <= 200 + 1e-6
    # the default (up to 2 s) loses only the spikes of the first 500 ms interval, before its update
    assert schedule(simulate_arrivals(payloads, "pcmu", delays), "pcmu").count(LATE) <= 500 / 20 / 3 + 2


def test_adaptive_delay_rises_with_jitter_at_once_and_comes_down_slowly():
    payloads = encoded_clip("pcmu", "client")
    delays = np.full(2500, 30.0)
    delays[300:400:5] = 130  # for 2 s, one packet in five is 100 ms late
    sched = schedule(simulate_arrivals(payloads, "pcmu", delays), "pcmu", AdaptiveBuffer())
    # only the spikes of the first 500 ms interval are late; its maximum then lifts the target
    assert 1 <= sched.count(LATE) <= 4 and not (sched.status[330:] == LATE).any()
    wait = sched.wait_ms
    assert wait[351] == pytest.approx(120, abs=1)  # 100 ms falls in bucket 5: (1 + 5) * 20 ms
    # NetEq's histogram forgets slowly (0.983 per 500 ms once converged): the delay stays up for
    # seconds, then shrinks by at most 50 ms/s (1 ms a frame) to the 20 ms floor
    assert wait[1000] == pytest.approx(120, abs=1)
    assert np.all(np.diff(wait[400:]) >= -1.0 - 1e-6)
    assert wait[-1] == pytest.approx(20.0, abs=0.01)


def test_late_packets_are_late_not_lost_and_early_ones_play():
    payloads = encoded_clip("pcmu", "client")
    delays = np.full(100, 20.0)
    delays[50] = 95  # 75 ms later than the others
    packets = simulate_arrivals(payloads, "pcmu", delays)
    assert schedule(packets, "pcmu", FixedBuffer(60)).status[50] == LATE
    assert schedule(packets, "pcmu", FixedBuffer(80)).status[50] == PLAYED
    assert schedule(packets, "pcmu", FixedBuffer(80)).wait_ms[:50] == pytest.approx(80.0)


def test_sequence_and_timestamp_wraps_change_nothing():
    payloads = encoded_clip("opus", "client")
    delays = netem_jitter(400, 50, 10, seed=5)
    lost = np.random.default_rng(5).random(400) < 0.03
    lost[0] = False
    plain = schedule(simulate_arrivals(payloads, "opus", delays, lost), "opus")
    wrapped = schedule(simulate_arrivals(payloads, "opus", delays, lost, seq0=65500, ts0=2**32 - 960 * 7), "opus")
    assert np.array_equal(plain.status, wrapped.status)
    assert np.array_equal(plain.due_ns, wrapped.due_ns)


def test_duplicates_play_once_and_audio_follows_the_sender_timeline():
    payloads = encoded_clip("pcmu", "client")
    packets = simulate_arrivals(payloads, "pcmu", np.full(50, 25.0))
    order = np.r_[np.arange(50), [10, 20]]  # two copies arrive later
    arrival = np.r_[packets.arrival_ns, packets.arrival_ns[[10, 20]] + 5_000_000]
    doubled = ReceivedPackets(
        arrival, packets.seq[order], packets.rtp_ts[order], tuple(packets.payloads[i] for i in order)
    )
    result = playout(doubled, "pcmu")
    assert (result.frames, result.played) == (50, 50)
    assert np.array_equal(result.audio, decode_frames("pcmu", payloads[:50]))


def test_leading_losses_start_the_timeline_at_the_first_received_packet():
    payloads = encoded_clip("pcmu", "client")
    lost = np.zeros(60, dtype=bool)
    lost[:5] = True
    result = playout(simulate_arrivals(payloads, "pcmu", np.full(60, 20.0), lost), "pcmu")
    assert result.frames == 55 and result.effective_loss == 0
    assert np.array_equal(result.audio[:160], ulaw_decode(payloads[5]))


def test_record_file_round_trip(tmp_path):
    """ReceivedPackets reads what the receiving agent writes (PacketRecord.save)."""
    record = PacketRecord()
    payloads = encoded_clip("pcma", "gateway")[:30]
    for i, payload in enumerate(payloads):
        record.add(
            SimpleNamespace(
                sequence_number=(65530 + i) % 65536,
                timestamp=i * 160,
                ssrc=1234,
                payload_type=8,
                marker=0,
                payload=payload,
            )
        )
    record.save(tmp_path / "rx.npz")
    with np.load(tmp_path / "rx.npz") as arrays:
        packets = ReceivedPackets.from_npz(arrays)
    assert packets.payloads == tuple(payloads)
    result = playout(packets, "pcma", FixedBuffer(60))
    assert result.played == 30
    assert np.array_equal(result.audio, np.concatenate([alaw_decode(p) for p in payloads]))


def test_an_empty_record_plays_nothing():
    empty = ReceivedPackets(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), ())
    result = playout(empty, "opus")
    assert result.frames == 0 and result.audio.size == 0 and result.effective_loss == 0.0


def test_concealment_fills_lost_frames_with_speech_like_audio():
    payloads = encoded_clip("pcmu", "client")
    lost = np.zeros(200, dtype=bool)
    lost[120] = True  # a frame inside speech
    packets = simulate_arrivals(payloads, "pcmu", np.full(200, 20.0), lost)
    plc = playout(packets, "pcmu").audio[120 * 160 : 121 * 160]
    silence = playout(packets, "pcmu", concealment="silence").audio[120 * 160 : 121 * 160]
    original = ulaw_decode(payloads[120]).astype(float)
    assert not silence.any()
    assert np.sqrt(np.mean(plc.astype(float) ** 2)) > 0.3 * np.sqrt(np.mean(original**2))


# ------------------------------------------------------------------ properties

delays_st = st.lists(st.floats(0, 150, allow_nan=False), min_size=3, max_size=150)


@settings(max_examples=150, deadline=None)
@given(delays=delays_st, data=st.data())
def test_more_loss_never_gives_less_effective_loss(delays, data):
    """With the same first-arriving packet (the fixed buffer's anchor) and the same first and last frame
    (the timeline's ends), losing more packets never lowers lost + late."""
    n = len(delays)
    base = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    extra = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    depth = data.draw(st.floats(0, 200))
    base[[0, n - 1]] = False
    arrival = np.arange(n) * 20_000_000 + np.round(np.array(delays) * 1e6)  # as simulate_arrivals does
    anchor = int(np.flatnonzero(~base)[np.argmin(arrival[~base])])  # first of equals: a stable sort's pick
    more = base | extra
    more[[0, n - 1, anchor]] = False
    payloads = [b"\xff" * 160]
    few = schedule(simulate_arrivals(payloads, "pcmu", delays, base), "pcmu", FixedBuffer(depth))
    many = schedule(simulate_arrivals(payloads, "pcmu", delays, more), "pcmu", FixedBuffer(depth))
    assert few.frames == many.frames == n
    assert many.count(LOST) + many.count(LATE) >= few.count(LOST) + few.count(LATE)


@settings(max_examples=150, deadline=None)
@given(delays=delays_st, depths=st.tuples(st.floats(0, 300), st.floats(0, 300)), data=st.data())
def test_a_deeper_fixed_buffer_never_has_more_late_packets(delays, depths, data):
    n = len(delays)
    lost = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    assume(not lost.all())
    shallow, deep = sorted(depths)
    packets = simulate_arrivals([b"\xff" * 160], "pcmu", delays, lost)
    assert schedule(packets, "pcmu", FixedBuffer(deep)).count(LATE) <= schedule(
        packets, "pcmu", FixedBuffer(shallow)
    ).count(LATE)


@settings(max_examples=100, deadline=None)
@given(delays=delays_st)
def test_every_frame_is_played_late_or_lost_exactly_once(delays):
    packets = simulate_arrivals([b"\xff" * 160], "pcmu", delays)
    for buffer in (FixedBuffer(40), AdaptiveBuffer()):
        sched = schedule(packets, "pcmu", buffer)
        assert sched.frames == len(delays)
        assert sched.count(PLAYED) + sched.count(LATE) + sched.count(LOST) == sched.frames
        assert sched.count(LOST) == 0


def test_frames_the_listener_never_got_at_the_ends_are_counted():
    from testbed.scoring.direction import missing_ends
    from testbed.scoring.playout import LOST, PLAYED, Schedule

    sent = np.arange(100, dtype=np.int64) * 960 + (2**32 - 960 * 10)  # wraps after 10 frames
    heard = sent[5:60]
    assert missing_ends(sent, heard, 960) == (5, 40)
    assert missing_ends(sent, sent, 960) == (0, 0) and missing_ends(sent, sent[:0], 960) == (0, 0)
    middle = Schedule(np.full(3, PLAYED, np.int8), np.arange(3), np.arange(3), np.zeros(3))
    padded = middle.with_missing_ends(2, 1)
    assert padded.status.tolist() == [LOST, LOST, PLAYED, PLAYED, PLAYED, LOST]
    assert padded.packet.tolist() == [-1, -1, 0, 1, 2, -1] and np.isnan(padded.wait_ms[0])
