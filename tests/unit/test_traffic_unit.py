"""Cross traffic without a network: argv building, the on/off schedule, wire-rate arithmetic, and
reading the processes' JSON lines."""

from __future__ import annotations

import json
import sys

import pytest

from testbed.errors import TestbedError
from testbed.media.traffic.cli import parser
from testbed.media.traffic.rates import next_send, udp_gap
from testbed.scenario.model import TrafficSpec
from testbed.workload.traffic import (
    TrafficError,
    TrafficResult,
    commands_for,
    parse_events,
    sink_command,
    sink_report,
    source_command,
    source_report,
)


def spec(**fields) -> TrafficSpec:
    return TrafficSpec.model_validate({"name": "x", "from": "cdn", "to": "viewer", **fields})


def test_commands_for_udp_onoff_follow_the_scenario():
    sink, source = commands_for(
        spec(
            kind="udp_onoff",
            rate="5mbit",
            on="1s",
            off="500ms",
            dscp="AF41",
            packet_size="1000B",
            flows=3,
            start="2s",
            stop="12s",
        ),
        "198.18.1.10",
        5301,
    )
    assert sink[:3] == [sys.executable, "-m", "testbed.media.traffic"]
    assert sink[3:] == ["sink", "--kind", "udp", "--port", "5301", "--flows", "3", "--report-every", "1.0"]
    assert source[3:] == [
        "source",
        "--kind",
        "udp_onoff",
        "--to",
        "198.18.1.10",
        "--port",
        "5301",
        "--flows",
        "3",
        "--dscp",
        "34",
        "--rate",
        "5000000.0",
        "--packet-size",
        "1000",
        "--on",
        "1.0",
        "--off",
        "0.5",
        "--duration",
        "10.0",
    ]
    parsed = parser().parse_args(source[3:])  # what we build, the process accepts
    assert (parsed.kind, parsed.rate, parsed.on, parsed.off, parsed.duration) == ("udp_onoff", 5e6, 1.0, 0.5, 10.0)


def test_tcp_bulk_runs_until_stopped_without_a_stop_time():
    sink, source = commands_for(spec(kind="tcp_bulk", flows=4), "10.0.0.1", 6000, python="python3")
    assert sink == [
        "python3",
        "-m",
        "testbed.media.traffic",
        "sink",
        "--kind",
        "tcp",
        "--port",
        "6000",
        "--flows",
        "4",
        "--report-every",
        "1.0",
    ]
    assert "--duration" not in source and "--rate" not in source
    assert source[-2:] == ["--connect-timeout", "5.0"]
    assert parser().parse_args(source[3:]).flows == 4


def test_source_command_refuses_what_the_process_would():
    with pytest.raises(ValueError, match="needs a rate"):
        source_command("udp_cbr", "10.0.0.1", 1)
    with pytest.raises(ValueError, match="on and off"):
        source_command("udp_onoff", "10.0.0.1", 1, rate=1e6, on=1.0)
    with pytest.raises(ValueError, match="tcp_bulk, udp_cbr, udp_onoff"):
        source_command("icmp_flood", "10.0.0.1", 1)
    assert sink_command("udp_cbr", 0, idle=2)[-2:] == ["--idle", "2.0"]
    assert parser().parse_args(sink_command("tcp", 0, bind="::")[3:]).bind == "::"


def test_udp_gap_counts_wire_bytes():
    assert udp_gap(20e6, 1200) == pytest.approx(1242 * 8 / 20e6)
    assert udp_gap(1e6, 1200, overhead=62) == pytest.approx(1262 * 8 / 1e6)


def test_next_send_is_cbr_without_on_off():
    assert next_send(10.0, 0.25, 0.0) == 10.25


def test_next_send_jumps_over_the_pause():
    start, gap, on, off = 100.0, 0.3, 1.0, 2.0
    times = [start]
    while times[-1] < start + 7:
        times.append(next_send(times[-1], gap, start, on, off))
    bursts = [[t - start for t in times if k * 3 <= t - start < k * 3 + 1] for k in range(3)]
    assert [len(b) for b in bursts] == [4, 4, 4]  # 0, 0.3, 0.6, 0.9 after each burst start
    assert bursts[1][0] == pytest.approx(3.0) and bursts[2][0] == pytest.approx(6.0)
    assert not [t for t in times if 1 <= (t - start) % 3 < 3 - 1e-9]  # nothing in a pause


def lines(*events: dict) -> list[str]:
    return [json.dumps(e) for e in events]


SINK = lines(
    {"event": "ready", "kind": "udp", "port": 5301, "time": 1000.0, "pid": 1},
    {
        "event": "interval",
        "t": 1.0,
        "seconds": 1.0,
        "bytes": 600_000,
        "packets": 500,
        "bps": 4.8e6,
        "wire_bps": 4.968e6,
    },
    {"event": "interval", "t": 2.0, "seconds": 1.0, "bytes": 0, "packets": 0, "bps": 0.0, "wire_bps": 0.0},
    {
        "event": "done",
        "kind": "udp",
        "bytes": 600_000,
        "packets": 500,
        "seconds": 0.998,
        "bps": 4.8e6,
        "wire_bps": 4.97e6,
        "per_flow": [{"peer": "198.18.0.10:40000", "bytes": 600_000, "packets": 500}],
        "dscp": {"46": 500},
        "mss": None,
        "cpu_seconds": 0.1,
    },
)
SOURCE = lines(
    {"event": "ready", "kind": "udp_cbr"},
    {"event": "started", "flows": 1},
    {
        "event": "done",
        "kind": "udp_cbr",
        "sent_bytes": 600_000,
        "sent_packets": 500,
        "seconds": 1.0,
        "bps": 4.8e6,
        "wire_bps": 4.968e6,
        "dropped_local": 3,
        "skipped": 0,
        "refused": 0,
        "cpu_seconds": 0.05,
    },
)


def test_reports_read_back_from_json_lines():
    sink = sink_report(["", *SINK])
    assert sink.bytes == 600_000 and sink.dscp == {46: 500} and sink.ready_time == 1000.0
    assert [i.active for i in sink.intervals] == [True, False]
    assert sink.per_flow[0].peer == "198.18.0.10:40000"
    source = source_report(SOURCE)
    assert source.sent_packets == 500 and source.dropped_local == 3
    result = TrafficResult.from_reports("video", source, sink)
    assert (result.kind, result.sent_bytes, result.received_bytes) == ("udp_cbr", 600_000, 600_000)
    assert TrafficResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_events_as_the_agent_relays_them_are_accepted():
    relayed = [json.loads(line) for line in SOURCE]
    assert source_report(relayed).sent_bytes == 600_000


def test_an_error_event_raises_with_its_message():
    failed = lines({"event": "ready"}, {"event": "error", "message": "could not connect to 10.0.0.1:5301"})
    with pytest.raises(TrafficError, match="could not connect to 10.0.0.1:5301") as raised:
        source_report(failed)
    assert isinstance(raised.value, TestbedError) and raised.value.exit_code == 4


def test_a_crash_without_done_names_what_it_printed():
    crashed = ['{"event": "ready"}', "Traceback (most recent call last):", "OSError: [Errno 98] Address in use"]
    assert parse_events(crashed)[1] == {"event": "output", "text": "Traceback (most recent call last):"}
    with pytest.raises(TrafficError, match="ended without a report.*Address in use"):
        sink_report(crashed)
