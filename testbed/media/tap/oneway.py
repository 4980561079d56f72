"""One-way delay from two taps: the same (SSRC, sequence number) seen leaving one and arriving at another.

Namespaces share the host clock, so the delay of a packet is (receiver tap time - sender tap time).
The wrap-around arithmetic and the matching itself are :mod:`testbed.rtp`'s.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from testbed import rtp
from testbed.media.tap.records import DIRECTION_IN, DIRECTION_OUT, TapRecords

__all__ = ["OneWay", "match_one_way"]


class OneWay(NamedTuple):
    """Packets of one SSRC seen at both taps: extended sequence number, send and receive tap times."""

    seq: npt.NDArray[np.int64]
    send_ns: npt.NDArray[np.int64]
    recv_ns: npt.NDArray[np.int64]

    @property
    def delay_ms(self) -> npt.NDArray[np.float64]:
        delay: npt.NDArray[np.float64] = (self.recv_ns - self.send_ns) / 1e6
        return delay


def match_one_way(
    sender: TapRecords,
    receiver: TapRecords,
    ssrc: int,
    *,
    send_direction: int = DIRECTION_OUT,
    receive_direction: int = DIRECTION_IN,
) -> OneWay:
    """Pair the packets of ``ssrc`` leaving the sender's tap with those arriving at the receiver's.

    Sequence numbers are extended on each side (rollover) and the receiver's are put in the sender's
    cycles. Duplicates count once (the first copy in capture order). Sorted by extended sequence number;
    packets sent but never received are absent (``len(sent) - len(matched)`` is the loss). For a tap
    between the two (e.g. on a router), pass its ``send_direction``/``receive_direction``.
    """
    sent = sender.stream(ssrc, send_direction)
    received = receiver.stream(ssrc, receive_direction)
    joined = rtp.join(sent.seq, received.seq, received.time_ns)
    keys, first = rtp.first_copies(joined.sent_seq)
    recv_ns = joined.recv_ns[first]
    arrived = recv_ns >= 0
    return OneWay(keys[arrived], sent.time_ns[first[arrived]].astype(np.int64), recv_ns[arrived])
