"""A UDP reachability probe between two nodes: proves a datagram crosses the lab and counts the hops;
``all_pairs`` probes every ordered pair of hosts (``testbed lab check``).

The receiver asks for each datagram's IP TTL (IP_RECVTTL); the sender sends with TTL 64, so
``64 - ttl`` is the number of routers the datagram crossed.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from testbed.lab import netns
from testbed.sockopts import IP_RECVTTL

if TYPE_CHECKING:
    from testbed.lab.lab import Lab

SEND_TTL = 64


@dataclass(frozen=True)
class ProbeResult:
    source: str
    destination: str
    address: str
    received: bool
    ttl: int | None

    @property
    def hops(self) -> int | None:
        """Routers crossed (TTL decrements); None when nothing arrived."""
        return None if self.ttl is None else SEND_TTL - self.ttl


def udp_probe(
    source_ns: Path,
    destination_ns: Path,
    address: str,
    *,
    source: str = "",
    destination: str = "",
    timeout: float = 2.0,
    payload: bytes = b"voip-testbed probe",
    port: int = 0,
) -> ProbeResult:
    """Send one datagram from ``source_ns`` to ``address`` (an address inside ``destination_ns``), to
    ``port`` (0: any free port of the destination's range)."""

    def make_receiver() -> socket.socket:
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        receiver.bind((address, port))
        return receiver

    def make_sender() -> socket.socket:
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, SEND_TTL)
        return sender

    receiver = netns.run_in(destination_ns, make_receiver)
    sender = netns.run_in(source_ns, make_sender)
    with receiver, sender:
        port = receiver.getsockname()[1]
        receiver.settimeout(timeout)
        for _ in range(3):  # the first datagram may wait for ARP on each hop; resend once or twice
            sender.sendto(payload, (address, port))
            try:
                data, ancillary, _flags, _peer = receiver.recvmsg(2048, socket.CMSG_SPACE(4))
            except TimeoutError:
                continue
            if data != payload:
                continue
            ttl = next(
                (
                    struct.unpack("i", value[:4])[0]
                    for level, kind, value in ancillary
                    if level == socket.IPPROTO_IP and kind == socket.IP_TTL
                ),
                None,
            )
            return ProbeResult(source, destination, address, True, ttl)
    return ProbeResult(source, destination, address, False, None)


def hosts(lab: Lab) -> list[str]:
    """The lab's host nodes (not routers or switches), in plan order."""
    return [name for name, kind in lab.plan.nodes.items() if kind == "host"]


def all_pairs(lab: Lab, timeout: float = 2.0) -> list[ProbeResult]:
    """One probe from every host to every other host, row by row in plan order."""
    return [
        udp_probe(
            lab.node(source).netns_path,
            lab.node(destination).netns_path,
            str(lab.plan.address(destination)),
            source=source,
            destination=destination,
            timeout=timeout,
        )
        for source in hosts(lab)
        for destination in hosts(lab)
        if source != destination
    ]
