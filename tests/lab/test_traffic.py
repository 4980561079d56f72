"""Cross traffic with real packets: UDP rate fidelity, TCP filling a bottleneck, on/off bursts, DSCP
marks, connect retries, and every process ending on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from testbed.lab import Lab
from testbed.scenario.model import Scenario
from testbed.workload.traffic import (
    SinkReport,
    SourceReport,
    parse_events,
    sink_command,
    sink_report,
    source_command,
    source_report,
)
from tests.helpers import REPO
from tests.helpers.qos import class_packets, shipped

PORT = 5301


def plain() -> Scenario:
    """client --lan-- router --wan-- gateway, nothing shaped."""
    return Scenario.model_validate({"name": "plain"})


def bottleneck(rate: str = "10mbit") -> Scenario:
    return Scenario.model_validate({"name": "bottleneck", "links": {"wan": {"router": {"rate": rate}}}})


@contextmanager
def sink(lab: Lab, kind: str, *, node: str = "gateway", port: int = PORT, **options) -> Iterator[subprocess.Popen]:
    """A sink that is ready when the block starts; killed if the block leaves it running (a failed test)."""
    process = lab.node(node).popen(sink_command(kind, port, **options), stdout=subprocess.PIPE, text=True)
    try:
        ready = process.stdout.readline()
        assert parse_events([ready])[0]["event"] == "ready", ready
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def stop_sink(process: subprocess.Popen, signum: int | None = signal.SIGTERM, timeout: float = 5) -> SinkReport:
    """SIGTERM (or wait for it to end by itself) -> its report; it must exit 0 within ``timeout``."""
    if signum is not None:
        process.send_signal(signum)
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out
    return sink_report(out.splitlines())


def send(
    lab: Lab, kind: str, seconds: float, *, node: str = "client", to: str = "gateway", port: int = PORT, **options
) -> SourceReport:
    """Run a source for ``seconds`` to its natural end."""
    argv = source_command(kind, str(lab.plan.address(to)), port, duration=seconds, **options)
    result = lab.node(node).run(argv, timeout=seconds + 30)
    assert result.returncode == 0, result.stdout + result.stderr
    return source_report(result.stdout.splitlines())


@pytest.mark.parametrize(
    "rate, flows, dscp", [(5e6, 1, 46), (20e6, 4, 34)], ids=["5mbit-1flow-EF", "20mbit-4flows-AF41"]
)
def test_udp_cbr_arrives_at_its_wire_rate(registry, no_leftovers, rate, flows, dscp):
    with Lab(plain(), registry=registry) as lab, sink(lab, "udp", report_every=0.5) as receiving:
        sent = send(lab, "udp_cbr", 4, rate=rate, flows=flows, packet_size=1200, dscp=dscp)
        time.sleep(0.2)
        got = stop_sink(receiving)
    assert got.wire_bps == pytest.approx(rate, rel=0.03), f"measured {got.wire_bps / 1e6:.3f} Mbit/s"
    assert sent.wire_bps == pytest.approx(rate, rel=0.01)
    assert sent.dropped_local == 0 and sent.skipped == 0
    assert got.packets >= 0.999 * sent.sent_packets  # nothing shaped: (almost) nothing lost
    assert got.dscp == {dscp: got.packets}, "every datagram carried the DSCP"
    assert sum(i.bytes for i in got.intervals) == got.bytes, "the intervals (the last one partial) add up"
    ports = {flow.peer.rsplit(":", 1)[1] for flow in got.per_flow}
    assert len(got.per_flow) == flows and len(ports) == flows, "one source port per flow"
    assert max(f.packets for f in got.per_flow) - min(f.packets for f in got.per_flow) <= 1, "round-robin"


def test_tcp_bulk_fills_a_10mbit_bottleneck(registry, no_leftovers):
    """Payload goodput at most 1448/1514 = 95.6% of the 10 Mbit wire rate; at least 90% over the steady
    seconds (after slow start) leaves room for the odd loss-recovery stall but not for an idle link."""
    with Lab(bottleneck("10mbit"), registry=registry) as lab, sink(lab, "tcp", flows=4) as receiving:
        sent = send(lab, "tcp_bulk", 6, flows=4)
        got = stop_sink(receiving, signum=None)  # ends by itself: the sources reset all four flows
    steady = [i for i in got.intervals if 2.0 <= i.t <= 6.0 and i.bytes]
    goodput = sum(i.bytes for i in steady) * 8 / sum(i.seconds for i in steady)
    assert goodput >= 0.90 * 10e6, f"goodput {goodput / 1e6:.2f} Mbit/s"
    assert got.bps >= 0.88 * 10e6, f"whole-run goodput {got.bps / 1e6:.2f} Mbit/s"
    assert got.wire_bps == pytest.approx(10e6, rel=0.05)
    assert len(got.per_flow) == 4 and all(f.bytes > 0 for f in got.per_flow)
    assert sent.sent_bytes >= got.bytes  # the rest sat in socket buffers when the flows were reset


def test_tcp_dscp_lands_in_the_router_class(registry, no_leftovers):
    with Lab(bottleneck("10mbit"), registry=registry, router_template=shipped("ef-priority")) as lab:
        before = class_packets(lab)
        with sink(lab, "tcp", flows=2) as receiving:
            send(lab, "tcp_bulk", 1.5, flows=2, dscp=46)
            got = stop_sink(receiving, signum=None)
        after = class_packets(lab)
    voice = after["voice"] - before["voice"]
    bulk = after["bulk"] - before["bulk"]
    assert voice >= 0.9 * got.bytes / 1448, f"{voice} EF packets for {got.bytes} bytes"
    assert bulk <= 0.01 * voice


def test_udp_onoff_pattern_matches_on_and_off(registry, no_leftovers):
    on, off, every = 1.0, 1.0, 0.2
    with Lab(plain(), registry=registry) as lab, sink(lab, "udp", report_every=every) as receiving:
        send(lab, "udp_onoff", 6, rate=5e6, on=on, off=off)
        time.sleep(0.5)
        got = stop_sink(receiving)
    runs: list[tuple[bool, int]] = []  # (traffic?, intervals in a row)
    for interval in got.intervals:
        if runs and runs[-1][0] == interval.active:
            runs[-1] = (interval.active, runs[-1][1] + 1)
        else:
            runs.append((interval.active, 1))
    while runs and not runs[0][0]:
        runs.pop(0)  # before the source started: not part of the pattern
    inner = runs[:-1]  # the last run is the silence after the source ended
    assert [active for active, _ in inner] == [True, False, True, False, True], runs
    for active, count in inner:
        assert abs(count * every - (on if active else off)) <= every + 1e-9, runs
    bursting = [i for i in got.intervals if i.active]
    middle = sorted(i.wire_bps for i in bursting)[len(bursting) // 2]
    assert middle == pytest.approx(5e6, rel=0.05), "bursts are sent at the configured rate"


def test_sources_retry_until_the_sink_listens_and_fail_clearly_without_one(registry, no_leftovers):
    with Lab(plain(), registry=registry) as lab:
        address = str(lab.plan.address("gateway"))
        started = time.monotonic()
        nobody = lab.node("client").run(source_command("tcp_bulk", address, PORT, duration=1, connect_timeout=1))
        gave_up = time.monotonic() - started
        early = lab.node("client").popen(
            source_command("tcp_bulk", address, PORT, duration=1.5), stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        try:
            time.sleep(0.7)  # the source retries while nothing listens
            with sink(lab, "tcp") as receiving:
                got = stop_sink(receiving, signum=None, timeout=10)
            out, _ = early.communicate(timeout=10)
        finally:
            if early.poll() is None:
                early.kill()
                early.wait()
    assert nobody.returncode == 1 and gave_up < 3
    error = [e for e in parse_events(nobody.stdout.splitlines()) if e["event"] == "error"]
    assert error and "could not connect" in error[0]["message"] and "Connection refused" in error[0]["message"]
    assert early.returncode == 0 and source_report(out.splitlines()).sent_bytes > 0
    assert got.bytes > 0


def test_every_process_ends_promptly_on_sigterm(registry, no_leftovers):
    """Sources without a duration, one of them deep in an off period, and both sinks."""
    with Lab(plain(), registry=registry) as lab:
        address = str(lab.plan.address("gateway"))
        with sink(lab, "tcp", port=PORT, flows=2) as tcp_sink, sink(lab, "udp", port=PORT + 1) as udp_sink:
            sources = [
                lab.node("client").popen(
                    source_command("tcp_bulk", address, PORT, flows=2), stdout=subprocess.PIPE, text=True, cwd=REPO
                ),
                lab.node("client").popen(
                    source_command("udp_onoff", address, PORT + 1, rate=2e6, on=0.3, off=30),
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=REPO,
                ),
            ]
            try:
                time.sleep(1.5)
                for source in sources:
                    source.send_signal(signal.SIGTERM)
                stopped = time.monotonic()
                outputs = [source.communicate(timeout=5)[0] for source in sources]
                took = time.monotonic() - stopped
            finally:
                for source in sources:
                    if source.poll() is None:
                        source.kill()
                        source.wait()
            tcp_got = stop_sink(tcp_sink, signum=None, timeout=3)  # its flows were reset
            started = time.monotonic()
            udp_got = stop_sink(udp_sink, timeout=3)
            udp_took = time.monotonic() - started
    assert [s.returncode for s in sources] == [0, 0]
    assert took < 1.0 and udp_took < 1.0, f"sources {took:.2f} s, sink {udp_took:.2f} s"
    tcp_sent, udp_sent = (source_report(out.splitlines()) for out in outputs)
    assert tcp_sent.sent_bytes > 0 and tcp_got.bytes > 0
    assert udp_sent.sent_packets == udp_got.packets > 0  # one 0.3 s burst, then silence
    assert udp_sent.sent_packets == pytest.approx(0.3 * 2e6 / 8 / 1242, abs=2)
