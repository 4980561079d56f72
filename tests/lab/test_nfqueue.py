"""The NFQUEUE client with real namespaces and packets: client --lan-- router --wan-- gateway.

The client's egress (POSTROUTING -o lan) queues UDP to one port; the test holds, drops, rewrites and
reorders those datagrams and checks what the gateway receives.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from testbed.lab import Lab, netns
from testbed.lab.engine.nfqueue import NfQueue, NfQueueError, QueuedPacket, queue_counters
from testbed.lab.reach import udp_probe
from testbed.scenario import load_scenario
from tests.helpers.lab import MINIMAL

QUEUE = 3
HOOK_FORWARD, HOOK_POSTROUTING = 2, 4


@dataclass
class Flow:
    """A sender in the client and a receiver in the gateway, and the lab they live in."""

    lab: Lab
    sender: socket.socket
    receiver: socket.socket
    address: str
    port: int

    def send(self, *payloads: bytes) -> None:
        for payload in payloads:
            self.sender.sendto(payload, (self.address, self.port))

    def arrived(self, quiet: float = 0.3) -> list[bytes]:
        """Everything that reached the gateway until ``quiet`` seconds pass without a datagram."""
        self.receiver.settimeout(quiet)
        got = []
        while True:
            try:
                got.append(self.receiver.recv(65535))
            except TimeoutError:
                return got

    def queue_egress(self, *, bypass: bool = True, queue: int = QUEUE) -> None:
        """The rule under test: the client's UDP to the receiver's port goes to ``queue``."""
        iptables(
            self.lab,
            "client",
            "-t",
            "mangle",
            "-A",
            "POSTROUTING",
            "-o",
            "lan",
            "-p",
            "udp",
            "--dport",
            str(self.port),
            "-j",
            "NFQUEUE",
            "--queue-num",
            str(queue),
            *(["--queue-bypass"] if bypass else []),
        )

    def open_queue(self, node: str = "client", queue: int = QUEUE, **options) -> NfQueue:
        return netns.run_in(self.lab.node(node).netns_path, lambda: NfQueue(queue, **options))


def iptables(lab: Lab, node: str, *rule: str) -> None:
    result = lab.node(node).run(["iptables", *rule])
    assert result.returncode == 0, result.stderr


def receive(queue: NfQueue, count: int, timeout: float = 3.0) -> list[QueuedPacket]:
    deadline = time.monotonic() + timeout
    packets: list[QueuedPacket] = []
    while len(packets) < count and time.monotonic() < deadline:
        packets += queue.receive(timeout=deadline - time.monotonic())
    assert len(packets) == count, f"{len(packets)} of {count} packets were queued"
    return packets


def udp_payload(packet: bytes) -> bytes:
    header = (packet[0] & 0x0F) * 4
    return packet[header + 8 :]


@pytest.fixture
def path(registry, no_leftovers) -> Iterator[Flow]:
    with Lab(load_scenario(MINIMAL).scenario, registry=registry) as lab:
        address = str(lab.plan.address("gateway"))
        # resolve ARP on every hop first, so nothing the test queues waits for a neighbour
        assert udp_probe(lab.node("client").netns_path, lab.node("gateway").netns_path, address).received
        receiver = netns.run_in(lab.node("gateway").netns_path, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
        sender = netns.run_in(lab.node("client").netns_path, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
        with receiver, sender:
            receiver.bind((address, 0))
            yield Flow(lab, sender, receiver, address, receiver.getsockname()[1])


def test_accepted_packets_arrive_and_dropped_do_not(path):
    path.queue_egress()
    with path.open_queue() as queue:
        path.send(*(b"datagram %d" % i for i in range(10)))
        packets = receive(queue, 10)
        assert [udp_payload(p.payload) for p in packets] == [b"datagram %d" % i for i in range(10)]
        assert {(p.hook, p.hw_protocol, p.mark) for p in packets} == {(HOOK_POSTROUTING, 0x0800, 0)}
        assert [p.packet_id for p in packets] == list(range(packets[0].packet_id, packets[0].packet_id + 10))
        assert path.arrived(quiet=0.2) == [], "nothing leaves before its verdict"
        for packet in packets:
            queue.verdict(packet.packet_id, accept=packet.packet_id % 2 == 0)
        queue.flush()
        expected = [udp_payload(p.payload) for p in packets if p.packet_id % 2 == 0]
        assert path.arrived() == expected


def test_verdict_with_new_payload_and_mark_arrives_modified(path):
    path.queue_egress()
    # after the verdict the packet goes on to chains of later priority: count it there if it has our mark
    client = path.lab.node("client")
    for command in (
        "add table ip seen",
        "add chain ip seen late { type filter hook postrouting priority 100; }",
        "add rule ip seen late meta mark 0x42 counter",
    ):
        result = client.run(["nft", command])
        assert result.returncode == 0, result.stderr
    with path.open_queue() as queue:
        path.send(b"hello gateway")
        (packet,) = receive(queue, 1)
        header = (packet.payload[0] & 0x0F) * 4
        rewritten = bytearray(packet.payload)
        rewritten[header + 8] = ord("J")  # the first payload byte
        rewritten[header + 6 : header + 8] = b"\0\0"  # UDP over IPv4: checksum 0 means "not computed"
        queue.verdict(packet.packet_id, True, payload=bytes(rewritten), mark=0x42)
        queue.flush()
        assert path.arrived() == [b"Jello gateway"]
    listing = client.run(["nft", "list", "chain", "ip", "seen", "late"]).stdout
    assert "counter packets 1 " in listing, listing


def test_egress_packets_carry_no_kernel_timestamp(path):
    """Kernel quirk: NFQA_TIMESTAMP exists only for PREROUTING/INPUT/FORWARD; on egress use received_ns."""
    path.queue_egress()
    with path.open_queue() as queue:
        time.sleep(0.1)  # the kernel turns its receive timestamps on from a work queue
        before = time.monotonic_ns()
        path.send(b"one", b"two")
        packets = receive(queue, 2)
        after = time.monotonic_ns()
        queue.verdict_batch(packets[-1].packet_id, True)
    assert [p.timestamp_ns for p in packets] == [None, None]
    assert all(before <= p.received_ns <= after for p in packets)


def test_forwarded_packets_carry_kernel_timestamps(path):
    iptables(
        path.lab,
        "router",
        "-t",
        "mangle",
        "-A",
        "FORWARD",
        "-o",
        "wan",
        "-p",
        "udp",
        "--dport",
        str(path.port),
        "-j",
        "NFQUEUE",
        "--queue-num",
        str(QUEUE),
    )
    with path.open_queue("router") as queue:
        time.sleep(0.1)  # the kernel turns its receive timestamps on from a work queue
        sent_ns = []
        for i in range(5):
            sent_ns.append(time.time_ns())
            path.send(b"stamped %d" % i)
            time.sleep(0.01)
        packets = receive(queue, 5)
        queue.verdict_batch(packets[-1].packet_id, True)
    assert {p.hook for p in packets} == {HOOK_FORWARD}
    for sent, packet in zip(sent_ns, packets, strict=False):
        assert packet.timestamp_ns is not None
        # stamped when the router received it: after the send (microsecond resolution), well under 5 ms later
        assert sent - 1000 <= packet.timestamp_ns <= sent + 5_000_000
    assert len(path.arrived()) == 5


def test_queue_counters_report_the_queue(path):
    path.queue_egress()
    client = path.lab.node("client").netns_path
    assert netns.run_in(client, queue_counters, QUEUE) is None
    with path.open_queue(max_len=100) as queue:
        path.send(b"a", b"b", b"c")
        packets = receive(queue, 3)
        held = netns.run_in(client, queue_counters, QUEUE)
        assert held is not None
        assert held["queue_num"] == QUEUE and held["peer_portid"] == queue.portid
        assert held["queue_total"] == 3 and held["copy_mode"] == 2  # NFQNL_COPY_PACKET
        assert held["copy_range"] == 0xFFFF - 4  # the kernel caps it to fit one netlink attribute
        assert held["queue_dropped"] == 0 and held["user_dropped"] == 0
        assert held["id_sequence"] == packets[-1].packet_id
        queue.verdict_batch(packets[-1].packet_id, True)
        queue.flush()
        assert netns.run_in(client, queue_counters, QUEUE)["queue_total"] == 0
    assert netns.run_in(client, queue_counters, QUEUE) is None, "close() unbinds"
    assert len(path.arrived()) == 3


def test_full_queue_drops_unless_fail_open(path):
    path.queue_egress()
    client = path.lab.node("client").netns_path
    with path.open_queue(max_len=2) as queue:
        path.send(b"1", b"2", b"3", b"4")
        packets = receive(queue, 2)
        assert netns.run_in(client, queue_counters, QUEUE)["queue_dropped"] == 2
        queue.verdict_batch(packets[-1].packet_id, True)
    assert path.arrived() == [b"1", b"2"]
    with path.open_queue(max_len=2, fail_open=True) as queue:
        path.send(b"5", b"6", b"7", b"8")
        assert path.arrived() == [b"7", b"8"], "over the limit, fail-open lets packets pass at once"
        packets = receive(queue, 2)
        queue.verdict_batch(packets[-1].packet_id, True)
    assert path.arrived() == [b"5", b"6"]


def test_packets_leave_in_verdict_order(path):
    path.queue_egress()
    with path.open_queue() as queue:
        path.send(b"first", b"second", b"third")
        first, second, third = receive(queue, 3)
        queue.verdict(second.packet_id, True)
        queue.flush()
        assert path.arrived() == [b"second"], "the held first packet does not block the second"
        queue.verdict(third.packet_id, True)
        queue.verdict(first.packet_id, True)
        queue.flush()
        assert path.arrived() == [b"third", b"first"]
        # a batch verdict releases everything up to an id, in queue order
        path.send(b"4", b"5", b"6")
        packets = receive(queue, 3)
        queue.verdict_batch(packets[1].packet_id, True)
        queue.flush()
        assert path.arrived() == [b"4", b"5"]
        queue.verdict(packets[2].packet_id, False)


def test_bypass_passes_packets_when_nothing_is_bound(path):
    path.queue_egress(bypass=True)
    path.send(b"nobody listens")
    assert path.arrived() == [b"nobody listens"]
    # the same rule without --queue-bypass drops what nobody takes: so the rule did match above
    iptables(path.lab, "client", "-t", "mangle", "-F", "POSTROUTING")
    path.queue_egress(bypass=False)
    path.send(b"dropped")
    assert path.arrived() == []


def test_packets_without_verdict_are_dropped_at_close(path):
    path.queue_egress()
    with path.open_queue() as queue:
        path.send(b"held")
        receive(queue, 1)
    assert path.arrived() == []


def test_kernel_refusals_name_what_failed(path):
    with path.open_queue() as queue:
        with pytest.raises(
            NfQueueError, match=f"binding NFQUEUE {QUEUE} failed: EPERM .* already bound by netlink port {queue.portid}"
        ):
            path.open_queue()
        queue.verdict(999_999, True)
        with pytest.raises(
            NfQueueError, match=f"verdict packet 999999 \\(accept\\) on NFQUEUE {QUEUE} failed: ENOENT"
        ) as refused:
            queue.receive(timeout=1)
        assert refused.value.errno == 2
        assert queue.receive(timeout=0) == [], "the error is reported once"
