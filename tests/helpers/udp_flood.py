"""Test tool run inside lab nodes: a paced UDP sender and a receiver that prints the wire rate it saw.

``python -m tests.helpers.udp_flood send ADDR RATE_BPS SECONDS [PORT [SOURCE_PORT [DSCP]]]`` /
``... receive ADDR [PORT]``. Separate processes so the sender's busy pacing loop never starves the
receiver (one GIL each).
"""

from __future__ import annotations

import socket
import sys
import time

PORT = 5001
PAYLOAD = 1400
WIRE_OVERHEAD = 8 + 20 + 14  # UDP + IPv4 + Ethernet header: what HTB counts on a veth


def send(address: str, rate_bps: float, seconds: float, port: int = PORT, source_port: int = 0, dscp: int = 0) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, dscp << 2)
    if source_port:
        sock.bind(("0.0.0.0", source_port))
    gap = (PAYLOAD + WIRE_OVERHEAD) * 8 / rate_bps
    payload = b"x" * PAYLOAD
    end = time.perf_counter() + seconds
    due = time.perf_counter()
    while time.perf_counter() < end:
        try:
            sock.sendto(payload, (address, port))
        except OSError:
            pass
        due += gap
        while time.perf_counter() < due:
            pass


def receive(address: str, port: int = PORT) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((address, port))
    print("ready", flush=True)
    sock.settimeout(5.0)
    first = last = None
    wire_bytes = 0
    while True:
        try:
            data = sock.recv(4096)
        except TimeoutError:
            break
        now = time.perf_counter()
        sock.settimeout(1.0)
        if first is None:
            first = now  # rate counts the bytes that arrived after the first datagram
        else:
            wire_bytes += len(data) + WIRE_OVERHEAD
            last = now
    print(0.0 if last is None or last == first else wire_bytes * 8 / (last - first), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), *(int(a) for a in sys.argv[5:8]))
    else:
        receive(sys.argv[2], *(int(a) for a in sys.argv[3:4]))
