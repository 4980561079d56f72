"""Wire-rate accounting and the pacing schedule of cross traffic, shared by the processes and the harness.

``bps`` is payload goodput (bytes x 8 / seconds). ``wire_bps`` counts what a shaper on a veth counts
(HTB sees the Ethernet frame without FCS): UDP adds 42 bytes per datagram (UDP 8 + IPv4 20 + Ethernet
14; 62 over IPv6); TCP is an estimate for full-size segments: 66 header bytes (Ethernet 14 + IPv4 20 +
TCP 20 + timestamps 12) per MSS of payload, so at MTU 1500 goodput is 1448/1514 = 95.6% of the wire
rate. A UDP source's ``rate`` is a wire rate, so a sink behind an unshaped link measures
``wire_bps == rate``; udp_onoff sends at ``rate`` during ``on`` and nothing during ``off``.
"""

from __future__ import annotations

import math

KINDS = ("tcp_bulk", "udp_cbr", "udp_onoff")
UDP_OVERHEAD_V4 = 8 + 20 + 14  # UDP + IPv4 + Ethernet header, per datagram
UDP_OVERHEAD_V6 = 8 + 40 + 14
TCP_HEADERS = 14 + 20 + 20 + 12  # Ethernet + IPv4 + TCP + timestamp option, per full-size segment
TCP_DEFAULT_MSS = 1448


def sink_kind(kind: str) -> str:
    """The sink's protocol for a source kind: tcp_bulk -> tcp, udp_* -> udp."""
    return "tcp" if kind == "tcp_bulk" else "udp"


def udp_overhead(address: str) -> int:
    return UDP_OVERHEAD_V6 if ":" in address else UDP_OVERHEAD_V4


def udp_gap(rate_bps: float, packet_size: int, overhead: int = UDP_OVERHEAD_V4) -> float:
    """Seconds between datagrams so that payload + headers make ``rate_bps`` on the wire."""
    return (packet_size + overhead) * 8 / rate_bps


def next_send(due: float, gap: float, start: float, on: float | None = None, off: float | None = None) -> float:
    """The send time after ``due``: one gap later, or, for on/off, the start of the next burst when that
    falls into a pause. Bursts start at ``start + k * (on + off)``; the schedule is absolute, so pacing
    errors never accumulate."""
    following = due + gap
    if on is None or off is None or off <= 0:
        return following
    period = on + off
    cycle = math.floor((following - start) / period)
    if following - start - cycle * period >= on:
        return start + (cycle + 1) * period
    return following
