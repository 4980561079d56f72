"""The end of a call in pure parts: packets still in flight at hang-up are left out (not lost), the three
loss figures of one direction agree (effective loss >= network loss), and a call's talk time."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.errors import ScenarioError
from testbed.scenario import load_scenario
from testbed.scoring.direction import SentPackets, TapArrivals, score_direction
from testbed.scoring.netstats import in_flight
from testbed.scoring.options import ScoringOptions
from testbed.scoring.playout import ReceivedPackets

MS = 1_000_000
FRAME_NS = 20 * MS


def direction(delays_ms, lost, hang_up_ns=None):
    """One G.711 direction: packet k sent at k*20 ms, arriving ``delays_ms[k]`` later unless ``lost[k]``."""
    n = len(delays_ms)
    seq = np.arange(n, dtype=np.int64)
    send = seq * FRAME_NS
    ts = seq * 160
    arrived = ~np.asarray(lost, dtype=bool)
    recv = send + (np.asarray(delays_ms, dtype=np.int64) * MS)
    order = np.argsort(recv[arrived], kind="stable")
    received = ReceivedPackets(recv[arrived][order], seq[arrived][order], ts[arrived][order], ())
    return score_direction(
        "pcmu",
        SentPackets(seq, send, ts),
        TapArrivals(seq[arrived][order], recv[arrived][order]),
        received,
        np.zeros(8000),
        8000,
        None,
        options=ScoringOptions(pesq=False),
        hang_up_ns=hang_up_ns,
    )


def test_in_flight_is_what_could_not_have_arrived_by_hang_up():
    send = np.arange(10) * FRAME_NS
    recv = send + 600 * MS
    recv[[2, 7, 8, 9]] = -1  # 2 lost mid-call; 7-9 still on the path
    hang_up = int(send[6] + 600 * MS + 5 * MS)
    assert in_flight(send, recv, hang_up).tolist() == [False] * 7 + [True] * 3
    assert not in_flight(send, recv, hang_up + 10_000 * MS).any()  # long after: all fates known


def test_a_slow_lossless_path_loses_nothing_at_hang_up():
    """600 ms one way, the listener hangs up 300 ms after the last packet was sent: 15 packets are
    still on the path. They are in flight, not lost, and the playout does not count them either."""
    delays = [600] * 400
    last_arrival = 399 * FRAME_NS + 600 * MS
    cut = 399 * FRAME_NS + 300 * MS
    arrived_by_cut = [k * FRAME_NS + 600 * MS <= cut for k in range(400)]
    score = direction(delays, [not a for a in arrived_by_cut], hang_up_ns=cut)
    assert score.network["loss"]["lost"] == 0 and score.network["in_flight"] == 15
    assert score.playout["effective_loss"] == 0
    unfixed = direction(delays, [not a for a in arrived_by_cut])
    assert unfixed.network["loss"]["lost"] == 15  # what the report said before
    assert direction(delays, [False] * 400, hang_up_ns=last_arrival + 1).network["in_flight"] == 0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(min_value=20, max_value=400), min_size=60, max_size=200),
    st.data(),
)
def test_effective_loss_is_never_below_network_loss(delays, data):
    lost = data.draw(st.lists(st.booleans(), min_size=len(delays), max_size=len(delays)))
    if all(lost):
        lost[0] = False
    score = direction(delays, lost)
    network = score.network["loss"]["fraction"]
    assert score.playout["effective_loss"] >= network - 1e-9


CALL = """name: talk
calls:
  - {name: rep, %s}
"""


def test_talk_time_instead_of_duration(tmp_path):
    path = tmp_path / "talk.yaml"
    path.write_text(CALL % "talk: 8s")
    call = load_scenario(path).scenario.calls[0]
    assert call.talk == 8
    path.write_text(CALL % "talk: 8s, duration: 10s")
    with pytest.raises(ScenarioError, match="duration .* or talk"):
        load_scenario(path)
