"""The packet tap with real namespaces and packets: every RTP packet recorded at both ends with the
right direction, DSCP and sequence numbers across rollover; cross traffic filtered out in the kernel;
one-way delay through the userspace impairment engine; a pcap that parses; a clean exit on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from testbed.lab import Lab
from testbed.media.tap import DIRECTION_IN, DIRECTION_OUT, extended_sequence, load_records, match_one_way, tap_command
from testbed.scenario.model import Scenario
from tests.helpers import REPO
from tests.helpers.lab import rest_of_output, wait_for_line
from tests.helpers.pcap import read_pcap
from tests.helpers.senders import FIRST_SEQ, PAYLOAD, RTCP_EVERY, RTP_PORT, SSRC


def in_node(lab: Lab, node: str, call: str) -> subprocess.Popen:
    return lab.node(node).popen([sys.executable, "-c", f"from tests.helpers.senders import *; {call}"], cwd=REPO)


@contextmanager
def taps(lab: Lab, where: list[tuple[str, str]], tmp_path: Path) -> Iterator[dict[str, dict]]:
    """Run a tap on each (node, interface) while the block runs; afterwards the dict holds their done lines."""
    done: dict[str, dict] = {}
    running = {}
    try:
        for node, interface in where:
            process = lab.node(node).popen(
                tap_command(interface, tmp_path / f"{node}-{interface}"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            running[node] = process
            assert json.loads(wait_for_line(process, '"ready"', timeout=30).splitlines()[-1])["event"] == "ready"
        yield done
        for node, process in running.items():
            process.send_signal(signal.SIGTERM)
            out = rest_of_output(process, timeout=60)
            assert process.returncode == 0, process.stderr.read()
            done[node] = json.loads(out.strip().splitlines()[-1])
            assert done[node]["event"] == "done"
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def test_every_rtp_packet_at_both_taps_and_no_cross_traffic(registry, no_leftovers, tmp_path):
    count, pps = 300, 500
    with Lab(Scenario.model_validate({"name": "tap"}), registry=registry) as lab:
        gateway = str(lab.plan.address("gateway"))
        client = str(lab.plan.address("client"))
        with taps(lab, [("client", "lan"), ("gateway", "wan")], tmp_path) as done:
            cross = in_node(lab, "client", f"send_zeros({gateway!r}, 2000, 1.0)")
            in_node(lab, "client", f"send_rtp({gateway!r}, {count}, {pps})").wait(timeout=60)
            cross.wait(timeout=60)
    sent, received = load_records(tmp_path / "client-lan"), load_records(tmp_path / "gateway-wan.npz")
    rtcp = count // RTCP_EVERY
    for side, records in (("client", sent), ("gateway", received)):
        assert done[side]["packets"] == count and len(records) == count, f"{side}: cross traffic got through?"
        assert done[side]["rtcp"] == rtcp and done[side]["dropped"] == 0
        assert done[side]["kernel_passed"] == count + rtcp, "the kernel filter passed other packets"
        assert set(records.ssrc.tolist()) == {SSRC}
        assert extended_sequence(records.seq).tolist() == list(range(FIRST_SEQ, FIRST_SEQ + count))
        assert set(records.dscp.tolist()) == {46} and set(records.pt.tolist()) == {111}
        assert records.marker.tolist() == [1] + [0] * (count - 1)
        assert set(records.size.tolist()) == {20 + 8 + 12 + PAYLOAD} and set(records.payload.tolist()) == {PAYLOAD}
        assert set(records.sport.tolist()) == {10000} and set(records.dport.tolist()) == {RTP_PORT}
        assert {str_ip(a) for a in records.src} == {client} and {str_ip(a) for a in records.dst} == {gateway}
        assert records.rtp_ts.tolist() == [i * 960 for i in range(count)]
    assert set(sent.direction.tolist()) == {DIRECTION_OUT} and set(received.direction.tolist()) == {DIRECTION_IN}

    matched = match_one_way(sent, received, SSRC)
    assert matched.seq.tolist() == list(range(FIRST_SEQ, FIRST_SEQ + count))
    delay = matched.delay_ms
    assert delay.min() >= 0, "tap clocks disagree"
    assert np.median(delay) < 1 and delay.max() < 50, f"idle veth: median {np.median(delay):.3f} ms"
    # the ring's frames carry the stack's own stamps (SO_TIMESTAMPNS turned network timestamping on),
    # in nanoseconds: not a clock read when the ring got the frame, not a jiffy-grained one
    assert sent.meta["unstamped"] == 0 and received.meta["unstamped"] == 0
    assert len(np.unique(sent.time_ns % 1_000_000)) > count // 2
    gaps = np.diff(sent.time_ns) / 1e6
    assert np.median(gaps) == pytest.approx(1000 / pps, abs=0.2), "kernel timestamps follow the sender's pacing"

    header, packets = read_pcap(tmp_path / "gateway-wan.pcap")
    assert header["magic"] == 0xA1B23C4D and header["linktype"] == 1 and header["snaplen"] == 200
    assert len(packets) == count + rtcp
    rtp_times = [t for t, _, _, data in packets if data[43] & 0x7F == 111]
    assert rtp_times == received.time_ns.tolist()
    assert {orig for _, _, orig, _ in packets} == {14 + 20 + 8 + 12 + PAYLOAD, 14 + 20 + 8 + 28}


def str_ip(value: int) -> str:
    import ipaddress

    return str(ipaddress.IPv4Address(int(value)))


def test_one_way_delay_through_the_userspace_engine(registry, no_leftovers, tmp_path):
    scenario = Scenario.model_validate(
        {"name": "t", "impairment_engine": "userspace", "links": {"wan": {"router": {"delay": "20ms"}}}}
    )
    count = 200
    with Lab(scenario, registry=registry) as lab:
        gateway = str(lab.plan.address("gateway"))
        with taps(lab, [("client", "lan"), ("router", "wan"), ("gateway", "wan")], tmp_path):
            in_node(lab, "client", f"send_rtp({gateway!r}, {count}, 100)").wait(timeout=60)
    client, router, gateway_tap = (
        load_records(tmp_path / name) for name in ("client-lan", "router-wan", "gateway-wan")
    )
    end_to_end = match_one_way(client, gateway_tap, SSRC)
    assert len(end_to_end.seq) == count
    engine = lab.engine_stats["wan@router"]  # its own release lateness tells a loaded host from a wrong delay
    assert np.median(end_to_end.delay_ms) == pytest.approx(20, abs=1), f"engine stats: {engine}"
    assert end_to_end.delay_ms.min() >= 19
    # the engine holds packets before the router's egress: its wan tap sees them leave 20 ms later
    to_router_egress = match_one_way(client, router, SSRC, receive_direction=DIRECTION_OUT)
    on_the_wire = match_one_way(router, gateway_tap, SSRC)
    assert np.median(to_router_egress.delay_ms) == pytest.approx(20, abs=1)
    assert 0 <= np.median(on_the_wire.delay_ms) < 1


def test_tap_exits_on_sigterm_without_traffic(registry, no_leftovers, tmp_path):
    with Lab(Scenario.model_validate({"name": "tap"}), registry=registry) as lab:
        with taps(lab, [("gateway", "wan")], tmp_path) as done:
            pass
    assert done["gateway"] == done["gateway"] | {"event": "done", "packets": 0, "rtcp": 0, "dropped": 0}
    assert len(load_records(tmp_path / "gateway-wan")) == 0
    assert read_pcap(tmp_path / "gateway-wan.pcap")[1] == []


def test_tap_on_a_missing_interface_says_so(registry, no_leftovers, tmp_path):
    with Lab(Scenario.model_validate({"name": "tap"}), registry=registry) as lab:
        result = lab.node("client").run(tap_command("nosuch0", tmp_path / "x"))
    assert result.returncode == 2
    assert "nosuch0" in json.loads(result.stdout)["message"]


# A sender as fast as plain Python goes: RTP-looking datagrams (version 2, PT 96, 20 bytes of payload),
# the sequence number in the RTP timestamp too, so every packet is told apart. IP_RECVERR: a datagram
# the kernel drops on the way out raises ENOBUFS, and is sent again, so each one counted reached the wire.
BLAST = r"""
import errno, socket, struct, sys
address, port, count, ssrc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.IPPROTO_IP, 11, 1)
sock.connect((address, port))
send = sock.send
for i in range(count):
    packet = struct.pack("!BBHII", 0x80, 96, i % 65536, i, ssrc) + b"\x55" * 20
    while True:
        try:
            send(packet)
            break
        except OSError as error:
            if error.errno != errno.ENOBUFS:
                raise
print(count, flush=True)
"""
# Somewhere for them to go (no ICMP port unreachable back, which would fail the connected senders).
SINK = r"""
import socket, sys, time
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
time.sleep(600)
"""


def test_a_tap_keeps_count_of_a_burst_faster_than_one_recvmsg_per_packet(registry, no_leftovers, tmp_path):
    """200k small RTP packets from two senders as fast as they go (several 100k packets/s here, where a
    recvmsg per packet lost some): the router's tap captures each one or counts it as dropped."""
    count, senders, first_ssrc = 200_000, 2, 0xB1A57000
    with Lab(Scenario.model_validate({"name": "tap"}), registry=registry) as lab:
        router = str(lab.plan.address("router", "wan"))
        sink = lab.node("router").popen([sys.executable, "-c", SINK, str(RTP_PORT)], stdout=subprocess.PIPE, text=True)
        try:
            wait_for_line(sink, "ready", timeout=30)
            with taps(lab, [("router", "wan")], tmp_path) as done:
                argv = [sys.executable, "-c", BLAST, router, str(RTP_PORT), str(count // senders)]
                blasts = [
                    lab.node("gateway").popen([*argv, str(first_ssrc + i)], stdout=subprocess.PIPE, text=True)
                    for i in range(senders)
                ]
                sent = sum(int(blast.communicate(timeout=120)[0]) for blast in blasts)
                time.sleep(1)  # the last datagrams through the receiving softirq
        finally:
            sink.kill()
            sink.wait()
    assert sent == count
    summary = done["router"]
    captured = summary["packets"] + summary["rtcp"] + summary["other"]
    assert isinstance(summary["dropped"], int) and summary["dropped"] >= 0
    assert captured + summary["dropped"] == count, summary
    assert summary["kernel_passed"] == count and summary["rtcp"] == 0 and summary["other"] == 0
    assert summary["ring_frames"] >= 65536
    records = load_records(tmp_path / "router-wan")
    assert len(records) == summary["packets"] and set(records.direction.tolist()) <= {DIRECTION_IN}
    for i in range(senders):
        numbers = records.stream(first_ssrc + i).rtp_ts
        assert len(np.unique(numbers)) == len(numbers) and numbers.max(initial=0) < count // senders
    assert sum(len(records.stream(first_ssrc + i)) for i in range(senders)) == summary["packets"]
    assert len(read_pcap(tmp_path / "router-wan.pcap")[1]) == captured
