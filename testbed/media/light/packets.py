"""The light endpoint's packets: plain RTP over UDP over IPv4 written as whole datagrams (the sender's
raw socket takes the IP header from us, so one socket sends every stream of a node with its own ports
and DSCP), and RTCP compound reports (RFC 3550: SR or RR, then SDES CNAME).

Sizes are WebRTC's: its media is SRTP (RFC 3711), the same RTP header and payload plus a 10-byte
authentication tag (AES_CM_128_HMAC_SHA1_80), and SRTCP adds a 4-byte index and the tag; both are
padded here with fixed bytes, so every packet is as long as a browser's.
"""

from __future__ import annotations

import socket
import struct

import numpy as np
import numpy.typing as npt

__all__ = [
    "HEADERS",
    "SRTCP_TRAILER",
    "SRTP_TAG",
    "header_template",
    "ntp_time",
    "payload_matrix",
    "rtcp_report",
    "write_packets",
]

IP_HEADER, UDP_HEADER, RTP_HEADER = 20, 8, 12
HEADERS = IP_HEADER + UDP_HEADER + RTP_HEADER  # the payload starts here in a datagram buffer
SRTP_TAG = 10  # AES_CM_128_HMAC_SHA1_80's authentication tag
SRTCP_TRAILER = 4 + SRTP_TAG  # the E flag + SRTCP index, then the tag
_TAG = bytes.fromhex("5a17c0de5a17c0de5a17")  # stands in for the tag: fixed, never all zeros
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900 to 1970


def header_template(src: str, dst: str, sport: int, dport: int, dscp: int, pt: int, ssrc: int) -> bytes:
    """A stream's 40 header bytes with its addresses, ports, DSCP, payload type and SSRC; lengths,
    sequence number and timestamp are written per packet (``write_packets``). IP ID 0 and both
    checksums 0: the kernel fills the IP ID and checksum of a raw socket's datagrams; a UDP checksum
    of 0 means none (IPv4), which NAT and receivers accept."""
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        dscp << 2,
        0,
        0,
        0x4000,
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    udp = struct.pack("!HHHH", sport, dport, 0, 0)
    rtp = struct.pack("!BBHII", 0x80, pt & 0x7F, 0, 0, ssrc)
    return ip + udp + rtp


def payload_matrix(payloads: list[bytes]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """A clip's payloads as rows (each followed by its SRTP tag, zero-padded to the longest) and each
    row's length with the tag: one gather copies a batch's payloads into their datagrams."""
    width = max((len(p) for p in payloads), default=0) + SRTP_TAG
    rows = np.zeros((len(payloads), width), np.uint8)
    lengths = np.zeros(len(payloads), np.int64)
    for i, payload in enumerate(payloads):
        block = payload + _TAG
        rows[i, : len(block)] = np.frombuffer(block, np.uint8)
        lengths[i] = len(block)
    return rows, lengths


def write_packets(
    data: npt.NDArray[np.uint8],
    rows: npt.NDArray[np.intp],
    payloads: npt.NDArray[np.uint8],
    payload_lengths: npt.NDArray[np.int64],
    seq: npt.NDArray[np.int64],
    timestamp: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """Fill datagram ``rows`` of ``data`` (headers already templated) with their payload rows, lengths,
    sequence numbers and timestamps, all at once; the datagrams' lengths."""
    width = payloads.shape[1]
    data[rows, HEADERS : HEADERS + width] = payloads
    total = HEADERS + payload_lengths
    udp = total - IP_HEADER
    data[rows, 2], data[rows, 3] = total >> 8, total & 0xFF
    data[rows, 24], data[rows, 25] = udp >> 8, udp & 0xFF
    seq = seq & 0xFFFF
    data[rows, 30], data[rows, 31] = seq >> 8, seq & 0xFF
    for byte in range(4):
        data[rows, 32 + byte] = (timestamp >> (24 - 8 * byte)) & 0xFF
    return total


def ntp_time(epoch_ns: int) -> tuple[int, int]:
    """NTP's 64-bit timestamp (seconds since 1900, fraction) of an epoch time."""
    seconds, rest = divmod(epoch_ns, 1_000_000_000)
    return seconds + NTP_EPOCH_OFFSET, (rest << 32) // 1_000_000_000


def rtcp_report(
    ssrc: int,
    cname: bytes,
    now_ns: int,
    sender: tuple[int, int, int] | None,
    block: tuple[int, int, int, int, int, int, int] | None,
) -> bytes:
    """One compound RTCP packet: an SR (``sender``: RTP timestamp now, packets, octets) or an RR, with
    one report block (``block``: source SSRC, fraction lost, cumulative lost, extended highest
    sequence, jitter, LSR, DLSR) when something was received, then SDES with the CNAME, then the
    SRTCP trailer."""
    blocks = b""
    if block is not None:
        source, fraction, lost, highest, jitter, lsr, dlsr = block
        lost = max(-(1 << 23), min(lost, (1 << 23) - 1)) & 0xFFFFFF
        blocks = struct.pack("!IIIIII", source, (fraction << 24) | lost, highest, jitter, lsr, dlsr)
    count = 1 if block is not None else 0
    if sender is not None:
        seconds, fraction_ = ntp_time(now_ns)
        body = struct.pack("!IIIIII", ssrc, seconds & 0xFFFFFFFF, fraction_, *sender) + blocks
        report = struct.pack("!BBH", 0x80 | count, 200, len(body) // 4) + body
    else:
        body = struct.pack("!I", ssrc) + blocks
        report = struct.pack("!BBH", 0x80 | count, 201, len(body) // 4) + body
    item = bytes([1, len(cname)]) + cname
    chunk = struct.pack("!I", ssrc) + item + b"\0" * (4 - len(item) % 4)
    sdes = struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk
    return report + sdes + struct.pack("!I", 0x80000000) + _TAG
