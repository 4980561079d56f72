"""libpcap output: nanosecond timestamps, Ethernet, frames truncated at the snap length, size capped."""

from __future__ import annotations

import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["PCAP_HEADER", "PCAP_RECORD", "PcapWriter", "pcap_header", "pcap_records"]

PCAP_MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
PCAP_HEADER = struct.Struct("<IHHiIII")  # magic, major, minor, thiszone, sigfigs, snaplen, linktype
PCAP_RECORD = np.dtype([("sec", "<u4"), ("nsec", "<u4"), ("incl_len", "<u4"), ("orig_len", "<u4")])


def pcap_header(snaplen: int) -> bytes:
    """libpcap file header: nanosecond timestamps (magic 0xa1b23c4d), version 2.4, Ethernet."""
    return PCAP_HEADER.pack(PCAP_MAGIC_NS, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET)


def pcap_records(
    time_ns: npt.ArrayLike, frames: npt.NDArray[np.uint8], caplen: npt.ArrayLike, orig_len: npt.ArrayLike
) -> bytes:
    """The pcap records (16-byte header + captured bytes) of a batch of frames, built without a Python loop."""
    n, width = frames.shape
    heads = np.empty(n, dtype=PCAP_RECORD)
    times = np.asarray(time_ns, dtype=np.int64)
    heads["sec"] = times // 1_000_000_000
    heads["nsec"] = times % 1_000_000_000
    heads["incl_len"] = caplen
    heads["orig_len"] = orig_len
    table = np.concatenate((heads.view(np.uint8).reshape(n, PCAP_RECORD.itemsize), frames), axis=1)
    keep = _prefixes(table.shape[1])[PCAP_RECORD.itemsize + np.asarray(caplen, dtype=np.int64)]
    return table[keep].tobytes()


@lru_cache(maxsize=4)
def _prefixes(width: int) -> npt.NDArray[np.bool_]:
    """Row k keeps the first k of ``width`` bytes: a row per length, looked up (a compare per byte of
    every batch cost the tap more than the copy itself)."""
    return np.arange(width + 1)[:, None] > np.arange(width)


class PcapWriter:
    """Appends records to a pcap file until ``limit`` bytes; past it, packets are counted, not written."""

    def __init__(self, path: str | Path, snaplen: int, limit: int):
        self.file = open(path, "wb")  # noqa: SIM115 - held open across writes, closed by close()
        self.file.write(pcap_header(snaplen))
        self.written = PCAP_HEADER.size
        self.limit = limit
        self.skipped = 0

    def write(
        self,
        time_ns: npt.NDArray[np.int64],
        frames: npt.NDArray[np.uint8],
        caplen: npt.NDArray[np.int64],
        orig_len: npt.NDArray[np.int64],
    ) -> None:
        sizes = PCAP_RECORD.itemsize + np.asarray(caplen, dtype=np.int64)
        fits = int(np.searchsorted(self.written + np.cumsum(sizes), self.limit, side="right"))
        if fits:
            self.file.write(pcap_records(time_ns[:fits], frames[:fits], caplen[:fits], orig_len[:fits]))
            self.written += int(sizes[:fits].sum())
        self.skipped += len(sizes) - fits

    def close(self) -> None:
        self.file.close()
