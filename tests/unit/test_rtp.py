"""testbed.rtp: wrap-around arithmetic and sender/receiver matching, against straightforward oracles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from testbed import rtp
from testbed.scoring.direction import SentPackets, TapArrivals, join_network


def _walk(start: int, steps: list[int]) -> np.ndarray:
    return start + np.concatenate(([0], np.cumsum(steps))).astype(np.int64)


@given(
    st.integers(0, 1 << 40),
    st.lists(st.integers(-32767, 32767), max_size=200),
)
def test_unwrap_recovers_sequence_numbers(start, steps):
    truth = _walk(start, steps)
    extended = rtp.extended_sequence(truth % 65536, reference=int(truth[0]))
    assert extended.tolist() == truth.tolist()


@given(st.integers(0, 1 << 40), st.lists(st.integers(-(1 << 31) + 1, (1 << 31) - 1), max_size=50))
def test_unwrap_recovers_timestamps(start, steps):
    truth = _walk(start, steps)
    assert rtp.extended_timestamp(truth % (1 << 32), reference=int(truth[0])).tolist() == truth.tolist()


def test_without_reference_the_first_value_stays():
    assert rtp.extended_sequence([65535, 0, 1]).tolist() == [65535, 65536, 65537]
    assert rtp.extended_timestamp([(1 << 32) - 960, 0]).tolist() == [(1 << 32) - 960, 1 << 32]
    assert rtp.unwrap([7, 1], bits=3).tolist() == [7, 9]
    assert rtp.extended_sequence([]).dtype == np.int64 and rtp.extended_sequence([]).size == 0


@pytest.mark.parametrize(
    "value, reference, expected",
    [(2, 65530, 65538), (65535, 65539, 65535), (0, 0, 0), (32768, 0, -32768), (32767, 0, 32767)],
)
def test_nearest_cycle(value, reference, expected):
    assert rtp.nearest_cycle(value, reference) == expected


def test_first_copies():
    keys, first = rtp.first_copies([5, 3, 5, 4, 3])
    assert keys.tolist() == [3, 4, 5] and first.tolist() == [1, 3, 0]


def test_join_marks_lost_packets_and_keeps_copies_in_arrival_seq():
    sent = np.array([65534, 65535, 0, 1], dtype=np.uint16)
    arrived = np.array([65535, 1, 65534, 1], dtype=np.uint16)  # 0 lost, 1 duplicated, 65534 late
    times = np.array([10, 20, 30, 40])
    joined = rtp.join(sent, arrived, times)
    assert joined.sent_seq.tolist() == [65534, 65535, 65536, 65537]
    assert joined.recv_ns.tolist() == [30, 10, -1, 20]
    assert joined.arrival_seq.tolist() == [65535, 65537, 65534, 65537]


def test_join_earliest_takes_the_smallest_time_not_the_first_in_order():
    joined_first = rtp.join([1, 2], [2, 2], [50, 40])
    joined_earliest = rtp.join([1, 2], [2, 2], [50, 40], earliest=True)
    assert joined_first.recv_ns.tolist() == [-1, 50]
    assert joined_earliest.recv_ns.tolist() == [-1, 40]


def test_join_with_nothing_sent_or_received():
    assert rtp.join([], [1], [5]).recv_ns.size == 0
    assert rtp.join([1, 2], [], []).recv_ns.tolist() == [-1, -1]


def _old_join_network(sent_seq, arrival_seq, arrival_ns):
    """scoring.direction.join_network as it was before testbed.rtp: a dict-based oracle."""
    sent_ext = rtp.extended_sequence(sent_seq)
    arr_ext = rtp.extended_sequence(arrival_seq, int(sent_ext[0])) if len(arrival_seq) else np.zeros(0, np.int64)
    recv = np.full(len(sent_ext), -1, dtype=np.int64)
    order = np.argsort(arrival_ns, kind="stable")
    first_seen: dict[int, int] = {}
    for s, t in zip(arr_ext[order].tolist(), np.asarray(arrival_ns)[order].tolist(), strict=False):
        first_seen.setdefault(s, t)
    index = {s: i for i, s in enumerate(sent_ext.tolist())}
    for s, t in first_seen.items():
        if s in index:
            recv[index[s]] = t
    return sent_ext, recv, arr_ext


@given(
    st.integers(0, 65535),
    st.integers(1, 300),
    st.randoms(use_true_random=False),
)
def test_join_network_matches_the_old_dict_based_join(start, count, random):
    sent = (start + np.arange(count)) % 65536
    picks = [i for i in range(count) if random.random() > 0.2]
    picks += [random.choice(picks)] if picks and random.random() > 0.5 else []  # a duplicate
    random.shuffle(picks)
    arrived = sent[picks] if picks else np.zeros(0, np.int64)
    times = np.array([random.randrange(1000) for _ in picks], dtype=np.int64)
    old_seq, old_recv, old_arrivals = _old_join_network(sent, arrived, times)
    seq, send_ns, recv, arrivals = join_network(
        SentPackets(sent, np.arange(count), np.zeros(count)), TapArrivals(arrived, times)
    )
    assert seq.tolist() == old_seq.tolist()
    assert recv.tolist() == old_recv.tolist()
    assert arrivals.tolist() == old_arrivals.tolist()
