"""The tap's record format: one row per RTP packet, one numpy column per field, saved as ``PREFIX.npz``.

Read back by ``testbed.rescore`` (scoring a stored run) and by tests; the column types are fixed by
:data:`RECORD_FIELDS`, and the capture summary travels along as JSON in the ``meta`` entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DIRECTION_IN",
    "DIRECTION_OUT",
    "RECORD_FIELDS",
    "TapRecords",
    "empty_columns",
    "load_records",
    "save_records",
]

DIRECTION_IN = 0
DIRECTION_OUT = 1

RECORD_FIELDS: dict[str, str] = {
    "time_ns": "i8",  # kernel timestamp, CLOCK_REALTIME
    "direction": "u1",  # 0 in, 1 out
    "ssrc": "u4",
    "seq": "u2",
    "rtp_ts": "u4",
    "pt": "u1",
    "marker": "u1",
    "size": "u2",  # IP total length
    "dscp": "u1",
    "src": "u4",  # IPv4 address as an integer
    "dst": "u4",
    "sport": "u2",
    "dport": "u2",
    "payload": "i4",  # UDP payload minus the RTP header (incl. CSRCs, extension); SRTP: with auth tag
}

Column = npt.NDArray[Any]


@dataclass(frozen=True)
class TapRecords:
    """One tap's RTP packets in capture order, one numpy array per field (see ``RECORD_FIELDS``)."""

    time_ns: Column
    direction: Column
    ssrc: Column
    seq: Column
    rtp_ts: Column
    pt: Column
    marker: Column
    size: Column
    dscp: Column
    src: Column
    dst: Column
    sport: Column
    dport: Column
    payload: Column
    interface: str = ""
    rtcp: int = 0
    dropped: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.time_ns)

    def select(self, mask: npt.NDArray[Any]) -> TapRecords:
        """The rows a boolean mask or an index array picks."""
        columns = {name: getattr(self, name)[mask] for name in RECORD_FIELDS}
        return TapRecords(**columns, interface=self.interface, rtcp=self.rtcp, dropped=self.dropped, meta=self.meta)

    def stream(self, ssrc: int, direction: int | None = None) -> TapRecords:
        """The packets of one SSRC (in one direction, if given)."""
        mask = self.ssrc == ssrc
        if direction is not None:
            mask &= self.direction == direction
        return self.select(mask)

    def ssrcs(self) -> list[int]:
        return [int(s) for s in np.unique(self.ssrc)]

    def structured(self) -> Column:
        """The records as one numpy structured array."""
        table = np.empty(len(self), dtype=[(name, kind) for name, kind in RECORD_FIELDS.items()])
        for name in RECORD_FIELDS:
            table[name] = getattr(self, name)
        return table


def empty_columns() -> dict[str, Column]:
    return {name: np.empty(0, dtype=kind) for name, kind in RECORD_FIELDS.items()}


def load_records(path: str | Path) -> TapRecords:
    """Read a tap's ``PREFIX.npz`` (``path`` may be the prefix or the file)."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    with np.load(path, allow_pickle=False) as data:
        columns = {name: data[name].astype(kind, copy=False) for name, kind in RECORD_FIELDS.items()}
        meta = json.loads(str(data["meta"])) if "meta" in data else {}
    return TapRecords(
        **columns,
        interface=meta.get("interface", ""),
        rtcp=int(meta.get("rtcp", 0)),
        dropped=int(meta.get("dropped", 0)),
        meta=meta,
    )


def save_records(path: str | Path, columns: dict[str, Column], meta: dict[str, Any]) -> None:
    arrays: dict[str, Any] = {name: columns[name].astype(kind, copy=False) for name, kind in RECORD_FIELDS.items()}
    np.savez(path, **arrays, meta=np.array(json.dumps(meta)))
