"""RTP wrap-around arithmetic and sender/receiver matching, on numpy arrays (no I/O, no sockets).

RTP sequence numbers are 16-bit and timestamps 32-bit counters that wrap. Every consumer (the packet
tap, network statistics, the playout model) extends them to int64 the same way, RFC 3550 A.1 style:
each value is put in the cycle nearest to the value before it, so reordering and loss of up to half a
cycle (32767 packets, 2**31 timestamp ticks) are told apart from a rollover.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "SEQ_BITS",
    "TS_BITS",
    "Join",
    "extended_sequence",
    "extended_timestamp",
    "first_copies",
    "join",
    "nearest_cycle",
    "unwrap",
]

IntArray = npt.NDArray[np.int64]
SEQ_BITS = 16
TS_BITS = 32


def nearest_cycle(value: int, reference: int, bits: int = SEQ_BITS) -> int:
    """``value`` (a counter of ``bits`` bits, or any integer) moved by whole cycles to within half a cycle
    of ``reference``; a value exactly half a cycle away lands below the reference."""
    half, full = 1 << (bits - 1), 1 << bits
    return reference + (value - reference + half) % full - half


def unwrap(values: npt.ArrayLike, bits: int = SEQ_BITS, reference: int | None = None) -> IntArray:
    """Extend wrapping counters, given in arrival (or send) order, to int64 across rollover.

    Each value lands in the cycle nearest to the one before it. The first lands in the cycle nearest to
    ``reference`` (an already extended value, e.g. the sender's first sequence number) or stays as it is.
    The result may be negative when ``reference`` is small.
    """
    extended = np.asarray(values, dtype=np.int64)
    if extended.size == 0:
        return extended.reshape(0)
    half, full = 1 << (bits - 1), 1 << bits
    steps = (np.diff(extended) + half) % full - half
    first = int(extended[0]) if reference is None else nearest_cycle(int(extended[0]), reference, bits)
    return first + np.concatenate(([0], np.cumsum(steps))).astype(np.int64)


def extended_sequence(seq: npt.ArrayLike, reference: int | None = None) -> IntArray:
    """16-bit RTP sequence numbers to int64 (see :func:`unwrap`)."""
    return unwrap(seq, SEQ_BITS, reference)


def extended_timestamp(ts: npt.ArrayLike, reference: int | None = None) -> IntArray:
    """32-bit RTP timestamps to int64 (see :func:`unwrap`)."""
    return unwrap(ts, TS_BITS, reference)


def first_copies(keys: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """The distinct keys, sorted, and the index of each one's first occurrence (duplicates count once)."""
    unique, first = np.unique(np.asarray(keys, dtype=np.int64), return_index=True)
    return unique.astype(np.int64), first.astype(np.int64)


class Join(NamedTuple):
    """A sender's packets joined with what a receiver saw of them.

    ``sent_seq``: the sender's extended sequence numbers (as sent, one entry per sent packet);
    ``recv_ns``: per sent packet the time of the first copy that arrived, -1 if none did;
    ``arrival_seq``: the receiver's extended sequence numbers in the given order, copies included, in
    the sender's cycles.
    """

    sent_seq: IntArray
    recv_ns: IntArray
    arrival_seq: IntArray


def join(
    sent_seq: npt.ArrayLike, arrival_seq: npt.ArrayLike, arrival_ns: npt.ArrayLike, *, earliest: bool = False
) -> Join:
    """Match 16-bit sequence numbers of a sender with those a receiver saw, in the receiver's order.

    Both sides are extended across rollover in the order given, the receiver's into the sender's cycles.
    Of several copies of one packet the first in the given order counts, or with ``earliest`` the one
    with the smallest time (the first of equal times). A sequence number sent twice gets the arrival on
    each of its entries.
    """
    sent = extended_sequence(sent_seq)
    arrived = extended_sequence(arrival_seq, int(sent[0]) if sent.size else None)
    times = np.asarray(arrival_ns, dtype=np.int64)
    recv = np.full(sent.size, -1, dtype=np.int64)
    if arrived.size and sent.size:
        order = np.argsort(times, kind="stable") if earliest else np.arange(arrived.size)
        keys, first = first_copies(arrived[order])
        first = order[first]
        at = np.minimum(np.searchsorted(keys, sent), keys.size - 1)
        found = keys[at] == sent
        recv[found] = times[first[at[found]]]
    return Join(sent, recv, arrived)
