"""The live view (pure parts): a leg's running counts, a direction's last second from two counts and the
sender's anchor, the E-model estimate, and the console's log line and merging."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from testbed.media.live import LiveCounter
from testbed.media.records import PacketRecord, SentRecord
from testbed.report.live_console import LiveView, merged
from testbed.results.live import LiveDirection, LiveSample
from testbed.workload.live import direction_second, estimate_mos

MS = 1_000_000
CLOCK = 48000
FRAME = 960  # 20 ms at 48 kHz


def records(first_seq: int, first_ts: int, delays_ms: list[float | None], send0_ns: int = 10**18):
    """A sender's and a receiver's records of packets 20 ms apart, each delayed as given (None: lost)."""
    sent, received = SentRecord(), PacketRecord()
    for index, delay in enumerate(delays_ms):
        seq, ts = (first_seq + index) % 65536, (first_ts + index * FRAME) % (1 << 32)
        send_ns = send0_ns + index * 20 * MS
        sent.send_ns.append(send_ns)
        sent.seq.append(seq)
        sent.rtp_ts.append(ts)
        sent.ssrc.append(1)
        if delay is not None:
            received.arrival_ns.append(send_ns + int(delay * MS))
            received.seq.append(seq)
            received.rtp_ts.append(ts)
    return sent, received


def test_counts_across_wrap_give_loss_delay_and_jitter_of_the_last_second():
    delays = [30.0] * 50 + [30.0 if i % 10 else None for i in range(50)]  # a second clean, a second 10% lost
    sent, received = records(65500, (1 << 32) - 20 * FRAME, delays)  # sequence and timestamp wrap inside
    sender, receiver = LiveCounter(CLOCK), LiveCounter(CLOCK)
    cut = 50
    first_sent = SentRecord(sent.send_ns[:cut], sent.seq[:cut], sent.rtp_ts[:cut], sent.ssrc[:cut])
    first_received = PacketRecord(received.arrival_ns[:cut], received.seq[:cut], received.rtp_ts[:cut])
    before = receiver.snapshot(first_received, first_sent)
    anchor = sender.snapshot(PacketRecord(), first_sent)
    second = direction_second("c", "a->b", "opus", before, receiver.snapshot(received, sent), anchor)
    assert second.loss_pct == pytest.approx(10.0)  # 5 of the second's 50 packets
    assert second.delay_ms == pytest.approx(30.0, abs=0.01) and second.jitter_ms == pytest.approx(0.0, abs=0.01)
    first = direction_second("c", "a->b", "opus", None, before, anchor)
    assert first.loss_pct == 0 and first.delay_ms == pytest.approx(30.0, abs=0.01) and first.mos > 4.3


def test_the_sender_anchor_turns_offsets_into_one_way_delay():
    sent, received = records(100, 5000, [80.0, 100.0, 120.0, 100.0])
    now = LiveCounter(CLOCK).snapshot(received, sent)
    anchor = LiveCounter(CLOCK).snapshot(PacketRecord(), sent)
    second = direction_second("c", "a->b", "opus", None, now, anchor)
    assert second.delay_ms == pytest.approx(100.0, abs=0.01)
    assert second.jitter_ms > 0
    assert direction_second("c", "a->b", "opus", None, now, None).delay_ms is None  # no sender yet


def test_the_estimate_falls_with_loss_and_delay():
    clean, lossy, late = (
        estimate_mos("opus", 20, 0, 1),
        estimate_mos("opus", 20, 10, 1),
        estimate_mos("opus", 600, 0, 1),
    )
    assert clean > 4.3 and lossy < clean and late < clean
    assert estimate_mos("opus", None, 0, 1) is None


def sample(variant: str, mos: float | None, elapsed: float = 5.0) -> LiveSample:
    return LiveSample(variant, elapsed, 13.0, [LiveDirection("call", "a->b", 1.0, 20.0, 1.0, mos)])


def test_a_log_gets_a_line_per_variant_and_the_time_left():
    out = io.StringIO()
    with LiveView(Console(file=out, width=80), runs=2) as view:
        view(sample("fifo", 1.2))
        view(sample("fifo", 1.1, 6.0))  # within 10 s of the last line: nothing
        view(sample("ef", 4.4, 1.0))
    lines = out.getvalue().splitlines()
    assert lines == [
        "  variant fifo (1 of 2): 5 of 13 s, lowest MOS estimate 1.20; about 24 s left in the run",
        "  variant ef (2 of 2): 1 of 13 s, lowest MOS estimate 4.40; about 12 s left in the run",
    ]


def test_a_direction_without_values_keeps_its_last_ones():
    kept = merged(sample("fifo", 1.2), sample("fifo", None))
    assert kept.directions[0].mos == 1.2
    terminal = Console(file=io.StringIO(), width=100, force_terminal=True)
    with LiveView(terminal, runs=1) as view:
        view(sample("fifo", 1.2))
        rendered = Console(file=io.StringIO(), width=100, record=True)
        rendered.print(view.render())
        text = rendered.export_text()
        assert "fifo     call  a->b       1.20" in text and "about 8 s left in the run" in text


def test_an_agent_that_does_not_answer_in_time_skips_a_second_not_the_view(monkeypatch):
    """A request that times out (a busy agent) must not end the sampler's thread."""
    import time
    from concurrent.futures import Future
    from types import SimpleNamespace

    from testbed.scenario.model import Scenario
    from testbed.workload import live
    from testbed.workload.call_plan import expand_calls

    monkeypatch.setattr(live, "INTERVAL_S", 0.05)
    answers = iter([Future(), Future()])  # two seconds without an answer, then answers

    def request(cmd: str) -> Future:
        future = next(answers, None)
        if future is None:
            future = Future()
            future.set_result({"legs": []})
        return future

    class Agents:  # what the sampler uses of testbed.workload.agents.Agents
        clients = {"client": SimpleNamespace(request=request), "gateway": SimpleNamespace(request=request)}

        def __getitem__(self, node: str) -> SimpleNamespace:
            return self.clients[node]

    agents = Agents()
    scenario = Scenario.model_validate({"name": "x", "calls": [{"name": "c", "from": "client", "to": "gateway"}]})
    [call] = expand_calls(scenario.calls)
    samples: list[LiveSample] = []
    with live.LiveSampler(agents, [call], "v", 5.0, samples.append):
        deadline = time.monotonic() + 5
        while not samples and time.monotonic() < deadline:
            time.sleep(0.02)
    assert samples and samples[0].variant == "v"
