"""The live view's samples (``results.live``): once a second, every call node's agent says its legs'
running counts (``media.live``) and this turns them into each direction's last second: loss, one-way
delay (the receiver's arrivals against the sender's RTP clock, both on the host's clock), jitter and an
E-model MOS estimate. It runs on a thread of the harness beside the calls; the agents do a few
additions per packet received (no decoding, no PESQ), and ``bench/live_view.py`` measures their pacing
with the view on and off.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from testbed.errors import InputError
from testbed.results.live import LiveDirection, LiveSample, Monitor
from testbed.rtp import TS_BITS, nearest_cycle
from testbed.scoring.emodel import absolute_delay_ms, call_inputs, rating
from testbed.workload.agents import AgentError, Agents
from testbed.workload.call_plan import SIDES, Call

INTERVAL_S = 1.0
MIN_BUFFER_MS = 20.0  # the jitter buffer the estimate assumes at least (a WebRTC minimum is one frame or two)


class LiveSampler:
    """A thread asking the agents for running counts once a second and handing each sample to ``monitor``."""

    def __init__(self, agents: Agents, calls: list[Call], variant: str, duration_s: float, monitor: Monitor):
        self.agents, self.calls, self.variant, self.duration_s = agents, calls, variant, duration_s
        self.monitor = monitor
        self.started = time.monotonic()
        self.previous: dict[tuple[str, str], dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-view", daemon=True)

    def __enter__(self) -> LiveSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            try:
                legs = self._counts()
            except (AgentError, TimeoutError):
                continue  # an agent busy (no answer within the second) or ending: the next second says more
            self.monitor(LiveSample(self.variant, time.monotonic() - self.started, self.duration_s, self.sample(legs)))

    def _counts(self) -> dict[tuple[str, str], dict[str, Any]]:
        nodes = sorted({call.node(side) for call in self.calls for side in SIDES})
        futures = [self.agents[node].request("live") for node in nodes if node in self.agents.clients]
        legs: dict[tuple[str, str], dict[str, Any]] = {}
        for future in futures:
            for leg in future.result(INTERVAL_S)["legs"]:
                legs[(leg["call"], leg["role"])] = leg
        return legs

    def sample(self, legs: dict[tuple[str, str], dict[str, Any]]) -> list[LiveDirection]:
        """Each direction's last second from two successive counts of its receiver (and the sender's anchor)."""
        found = []
        for call in self.calls:
            for sender, receiver in (("caller", "callee"), ("callee", "caller")):
                now = legs.get((call.id, receiver))
                sent = legs.get((call.id, sender))
                if now is None:
                    continue
                before = self.previous.get((call.id, receiver))
                self.previous[(call.id, receiver)] = now
                label = f"{call.node(sender)}->{call.node(receiver)}"
                found.append(direction_second(call.id, label, call.codec, before, now, sent))
        return found


def direction_second(
    call: str,
    label: str,
    codec: str,
    before: dict[str, Any] | None,
    now: dict[str, Any],
    sender: dict[str, Any] | None,
) -> LiveDirection:
    """One direction's last second (pure): loss from the receiver's expected and received packets, delay
    from its arrival offsets and both ends' anchors, MOS from the E-model with those."""
    received = now["received"] - (before["received"] if before else 0)
    expected = now["expected"] - (before["expected"] if before else 0)
    loss = None if expected <= 0 else max(0.0, 100.0 * (1 - received / expected))
    delay = None
    if received > 0 and sender and sender.get("send_anchor") and now.get("recv_anchor"):
        (recv_ns, recv_ts), (send_ns, send_ts) = now["recv_anchor"], sender["send_anchor"]
        ticks = nearest_cycle(recv_ts, send_ts, TS_BITS) - send_ts
        first_ms = (recv_ns - send_ns) / 1e6 - ticks * 1000 / now["clock"]  # the first packet's delay
        mean_offset = (now["offset_sum_ms"] - (before["offset_sum_ms"] if before else 0.0)) / received
        delay = first_ms + mean_offset
    jitter = now.get("jitter_ms") if received > 0 else None
    return LiveDirection(call, label, loss, delay, jitter, estimate_mos(codec, delay, loss, jitter))


def estimate_mos(codec: str, delay_ms: float | None, loss_pct: float | None, jitter_ms: float | None) -> float | None:
    """The E-model's MOS for a second: Ta from the delay plus a buffer of twice the jitter (at least
    ``MIN_BUFFER_MS``), Ppl the loss, no playout model (so late packets are not counted lost)."""
    if delay_ms is None or loss_pct is None:
        return None
    buffer_ms = max(MIN_BUFFER_MS, 2 * (jitter_ms or 0.0))
    try:
        ta = absolute_delay_ms(max(0.0, delay_ms), codec, buffer_ms)
        return round(rating(call_inputs(ta, loss_pct, 1.0, codec)).mos, 2)
    except InputError:
        return None
