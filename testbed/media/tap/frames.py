"""Ethernet/IPv4/UDP/RTP header parsing of captured frames, vectorised over a batch with numpy. RTP
relayed by TURN over UDP comes inside ChannelData (a 4-byte header first): it is parsed the same.

RTCP (second byte & 0x7f in 64..95, the RFC 5761 demultiplexing rule as WebRTC applies it) is told
apart from RTP here: the capture counts it and writes it to the pcap, but does not record it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from testbed.media.tap.records import RECORD_FIELDS

__all__ = ["DEFAULT_SNAPLEN", "ETH_HEADER", "ETH_P_IP", "MIN_SNAPLEN", "Parsed", "parse_frames"]

ETH_P_IP = 0x0800
ETH_HEADER = 14
DEFAULT_SNAPLEN = 200
MIN_SNAPLEN = 96  # Ethernet + the longest IPv4 header (60) + UDP + the fixed RTP header

Array = npt.NDArray[np.int64]


def _u16(frames: npt.NDArray[np.uint8], rows: Array, at: Array) -> npt.NDArray[np.uint32]:
    return (frames[rows, at].astype(np.uint32) << np.uint32(8)) | frames[rows, at + 1].astype(np.uint32)


def _u32(frames: npt.NDArray[np.uint8], rows: Array, at: Array) -> npt.NDArray[np.uint32]:
    return (_u16(frames, rows, at) << np.uint32(16)) | _u16(frames, rows, at + 2)


@dataclass
class Parsed:
    columns: dict[str, npt.NDArray[np.generic]]  # RTP packets only (``RECORD_FIELDS`` without time and direction)
    rtp: npt.NDArray[np.bool_]  # mask over the input rows
    rtcp: npt.NDArray[np.bool_]
    orig_len: Array  # frame length on the wire (Ethernet header + IP total length)


def parse_frames(frames: npt.NDArray[np.uint8], caplen: npt.ArrayLike) -> Parsed:
    """Parse Ethernet/IPv4/UDP/RTP headers of ``frames`` (uint8, one captured frame per row, zero
    padded) of which ``caplen`` bytes each were captured. Rows that are not RTP v2 over IPv4 UDP, or
    whose headers were not captured, are neither RTP nor RTCP."""
    n, width = frames.shape
    caplen = np.asarray(caplen, dtype=np.int64)
    if width < MIN_SNAPLEN:
        frames = np.pad(frames, ((0, 0), (0, MIN_SNAPLEN - width)))
        width = MIN_SNAPLEN
    rows = np.arange(n)
    zero = np.zeros(n, dtype=np.int64)
    ethertype = _u16(frames, rows, zero + 12)
    version_ihl = frames[:, 14]
    ihl = (version_ihl & 0x0F).astype(np.int64) * 4
    ip_len = _u16(frames, rows, zero + 16).astype(np.int64)
    udp = ETH_HEADER + ihl
    udp_len = _u16(frames, rows, np.minimum(udp + 4, width - 2)).astype(np.int64)
    # TURN ChannelData (first byte 0x40-0x7f): the RTP starts after its 4-byte header
    channel = np.where(frames[rows, np.minimum(udp + 8, width - 1)] >> 6 == 1, 4, 0).astype(np.int64)
    rtp = udp + 8 + channel
    first, second = frames[rows, np.minimum(rtp, width - 1)], frames[rows, np.minimum(rtp + 1, width - 1)]
    ok = (
        (ethertype == ETH_P_IP)
        & (version_ihl >> 4 == 4)
        & (ihl >= 20)
        & (frames[:, 23] == 17)
        & (_u16(frames, rows, zero + 20) & 0x1FFF == 0)
        & (caplen >= rtp + 12)
        & (udp_len >= 8 + channel + 12)
        & (first >> 6 == 2)
    )
    rtcp = ok & ((second & 0x7F) >= 64) & ((second & 0x7F) <= 95)
    is_rtp = ok & ~rtcp
    orig_len = np.maximum(caplen, ETH_HEADER + ip_len)

    r = rows[is_rtp]
    at = rtp[is_rtp]
    b0, b1 = first[is_rtp], second[is_rtp]
    header = 12 + 4 * (b0 & 0x0F).astype(np.int64)
    extension = (b0 & 0x10) != 0
    ext_at = np.minimum(at + header + 2, width - 2)
    ext_words = _u16(frames, r, ext_at).astype(np.int64)
    ext_captured = at + header + 4 <= caplen[is_rtp]
    # an extension header beyond the snap length: its length is unknown, count only its 4-byte head
    header = header + np.where(extension, 4 + np.where(ext_captured, 4 * ext_words, 0), 0)
    columns = {
        "ssrc": _u32(frames, r, at + 8),
        "seq": _u16(frames, r, at + 2),
        "rtp_ts": _u32(frames, r, at + 4),
        "pt": b1 & 0x7F,
        "marker": b1 >> 7,
        "size": ip_len[is_rtp],
        "dscp": frames[r, 15] >> 2,
        "src": _u32(frames, r, zero[is_rtp] + 26),
        "dst": _u32(frames, r, zero[is_rtp] + 30),
        "sport": _u16(frames, r, udp[is_rtp]),
        "dport": _u16(frames, r, udp[is_rtp] + 2),
        "payload": udp_len[is_rtp] - 8 - channel[is_rtp] - header,
    }
    typed = {name: values.astype(RECORD_FIELDS[name]) for name, values in columns.items()}
    return Parsed(typed, is_rtp, rtcp, orig_len)
