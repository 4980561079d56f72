"""Traffic generators that tests run inside nodes (``python -c "from tests.helpers.senders import *; ..."``).
They sleep between packets rather than spin, so they never compete for the CPU with the processes under
test (taps, impairment engines) on a 2-core machine."""

from __future__ import annotations

import socket
import struct
import time

SSRC = 0x5EED1234
FIRST_SEQ = 65530
RTP_PORT = 20000
PAYLOAD = 160
RTCP_EVERY = 50


def pause_until(due: float) -> None:
    """Sleep until ``time.perf_counter()`` reaches ``due`` (sleep's ~0.1 ms accuracy is plenty here)."""
    left = due - time.perf_counter()
    if left > 0:
        time.sleep(left)


def send_rtp(address: str, count: int, pps: float, first_seq: int = FIRST_SEQ, ssrc: int = SSRC) -> None:
    """Paced RTP v2 (PT 111, DSCP EF) with an RTCP sender report every ``RTCP_EVERY`` packets; runs in a node."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 46 << 2)
    sock.bind(("0.0.0.0", 10000))
    due = time.perf_counter()
    for i in range(count):
        pause_until(due)
        header = struct.pack("!BBHII", 0x80, (0x80 if i == 0 else 0) | 111, (first_seq + i) % 65536, i * 960, ssrc)
        sock.sendto(header + bytes([i % 256]) * PAYLOAD, (address, RTP_PORT))
        if i % RTCP_EVERY == RTCP_EVERY - 1:
            sock.sendto(struct.pack("!BBHI", 0x80, 200, 6, ssrc) + b"\0" * 20, (address, RTP_PORT))
        due += 1 / pps


def send_zeros(address: str, pps: float, seconds: float) -> None:
    """Zero-filled UDP cross traffic (what the testbed's cross traffic looks like to a tap)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    end = time.perf_counter() + seconds
    due = time.perf_counter()
    while time.perf_counter() < end:
        sock.sendto(b"\0" * 1000, (address, RTP_PORT + 1))
        due += 1 / pps
        pause_until(due)
