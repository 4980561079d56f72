"""An independent reader of classic pcap files, to check what the taps write."""

from __future__ import annotations

import struct
from pathlib import Path


def read_pcap(path: Path) -> tuple[dict, list[tuple[int, int, int, bytes]]]:
    """An independent strict reader of classic pcap files: header fields and (ts_ns, incl, orig, data)."""
    data = Path(path).read_bytes()
    magic, major, minor, zone, sigfigs, snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), hex(magic)
    scale = 1 if magic == 0xA1B23C4D else 1000
    header = {
        "magic": magic,
        "version": (major, minor),
        "thiszone": zone,
        "sigfigs": sigfigs,
        "snaplen": snaplen,
        "linktype": linktype,
    }
    records, at = [], 24
    while at < len(data):
        sec, fraction, incl, orig = struct.unpack_from("<IIII", data, at)
        assert fraction < 1_000_000_000 and incl <= snaplen and incl <= orig
        at += 16
        assert at + incl <= len(data), "truncated record"
        records.append((sec * 1_000_000_000 + fraction * scale, incl, orig, data[at : at + incl]))
        at += incl
    return header, records
