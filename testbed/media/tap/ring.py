"""The tap's memory-mapped receive ring (``PACKET_RX_RING``, ``TPACKET_V2``), read in batches with numpy.

Why a ring: a ``recvmsg`` per packet costs the tap a few microseconds of Python each, which caps it well
below the 50-100k packets/s a busy node sees. With a ring the kernel copies each frame (a header, then
the packet cut at the snap length) into memory the tap maps, and the tap takes every ready frame at
once: per-packet work is numpy's.

Layout (``<linux/if_packet.h>``): the ring is ``blocks`` blocks of ``block_size`` bytes (a power of two
of pages, so the kernel's allocation has no slack), each holding ``frames_per_block`` fixed-size frames;
frame ``i`` sits at ``(i // frames_per_block) * block_size + (i % frames_per_block) * frame_size``. A
frame starts with ``struct tpacket2_hdr`` (32 bytes), then ``struct sockaddr_ll`` at 32 (its
``sll_pkttype`` at 42), then the packet at ``tp_mac``; a frame of ``NET_OFFSET + snaplen`` bytes
(rounded up to 16) holds any link header of up to 28 bytes and a packet cut at ``snaplen``.

Protocol: the kernel fills frames in ring order and sets ``tp_status`` to ``TP_STATUS_USER`` when a
frame is complete; the reader hands it back by writing ``TP_STATUS_KERNEL``. Frames are claimed in
order but may complete out of order on two CPUs, so a batch is the run of ready frames from the
reader's position up to the first one not ready yet. When the frame at the kernel's position is still
the reader's, the packet is dropped and counted (``tp_drops`` in ``PACKET_STATISTICS``). Python has no
read barrier to put between the status scan and the copy: x86 keeps loads in order; on weaker CPUs
the numpy calls between them stand in for one.

Sizing: ``RING_FRAMES`` (128Ki) frames is about 1.3 s of 100k packets/s; at the default snap length of
200 a frame is 288 bytes, so the ring is about 36 MiB of kernel memory per tap.
"""

from __future__ import annotations

import mmap
import socket
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from testbed.sockopts import (
    PACKET_OUTGOING,
    PACKET_RX_RING,
    PACKET_VERSION,
    SOL_PACKET,
    TP_STATUS_KERNEL,
    TP_STATUS_TS_SOFTWARE,
    TP_STATUS_USER,
    TPACKET_ALIGNMENT,
    TPACKET_V2,
)

__all__ = ["BLOCK_SIZE", "FRAME_HEADER", "NET_OFFSET", "RING_FRAMES", "Batch", "Geometry", "PacketRing", "RingReader"]

RING_FRAMES = 1 << 17
BLOCK_SIZE = 1 << 18  # 256 KiB: 64 pages, 910 frames of 288 bytes
FIRST_LOOK = 256  # statuses a read looks at first

# struct tpacket2_hdr, then the struct sockaddr_ll behind it (at TPACKET_ALIGN(32) = 32)
FRAME_HEADER = np.dtype(
    {
        "names": ["status", "len", "snaplen", "mac", "net", "sec", "nsec", "pkttype"],
        "formats": ["<u4", "<u4", "<u4", "<u2", "<u2", "<u4", "<u4", "u1"],
        "offsets": [0, 4, 8, 12, 14, 16, 20, 42],
        "itemsize": 52,  # TPACKET2_HDRLEN
    }
)
# where the kernel puts the network header of a SOCK_RAW frame: TPACKET_ALIGN(TPACKET2_HDRLEN + 16)
NET_OFFSET = 80
TPACKET_REQ = struct.Struct("IIII")  # tp_block_size, tp_block_nr, tp_frame_size, tp_frame_nr

UInt8s = npt.NDArray[np.uint8]
Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


def _align(value: int, boundary: int) -> int:
    return -(-value // boundary) * boundary


@dataclass(frozen=True)
class Geometry:
    """The shape of a ring: what ``PACKET_RX_RING`` is told and how a frame's index maps to its offset."""

    frame_size: int
    frames_per_block: int
    blocks: int
    block_size: int

    @classmethod
    def for_snaplen(cls, snaplen: int, frames: int = RING_FRAMES, block_size: int = BLOCK_SIZE) -> Geometry:
        """At least ``frames`` frames, each big enough for a frame header and ``snaplen`` bytes of packet."""
        frame_size = _align(NET_OFFSET + snaplen, TPACKET_ALIGNMENT)
        while block_size < frame_size:
            block_size *= 2
        per_block = block_size // frame_size
        return cls(frame_size, per_block, max(1, -(-frames // per_block)), block_size)

    @property
    def frames(self) -> int:
        return self.frames_per_block * self.blocks

    @property
    def size(self) -> int:
        return self.block_size * self.blocks

    def request(self) -> bytes:
        """The ``struct tpacket_req`` for ``PACKET_RX_RING``."""
        return TPACKET_REQ.pack(self.block_size, self.blocks, self.frame_size, self.frames)

    def offset(self, index: int) -> int:
        block, slot = divmod(index, self.frames_per_block)
        return block * self.block_size + slot * self.frame_size


@dataclass(frozen=True)
class Batch:
    """Frames taken from the ring, in ring order; copies, so the ring's frames are free again."""

    frames: UInt8s  # [n, snaplen], zero past caplen
    caplen: Int64s  # bytes of each packet captured (at most snaplen)
    wire_len: Int64s  # its length on the wire (tp_len)
    time_ns: Int64s  # the kernel's timestamp, CLOCK_REALTIME
    outgoing: Bools  # sll_pkttype PACKET_OUTGOING: sent by this node
    software_stamp: Bools  # stamped when the stack saw it (skb->tstamp), not when the ring got it

    def __len__(self) -> int:
        return len(self.caplen)

    @classmethod
    def concatenate(cls, batches: list[Batch]) -> Batch:
        """One batch of several, in order (the tap parses a few large batches, not many small ones)."""
        if len(batches) == 1:
            return batches[0]
        return cls(**{name: np.concatenate([getattr(b, name) for b in batches]) for name in cls.__dataclass_fields__})


class RingReader:
    """Batch reads of a ring's frames over any writable buffer laid out as ``geometry`` says: the mmap of
    a socket's ring, or a bytearray in a test. Keeps the position of the next frame to read."""

    def __init__(self, buffer: Any, geometry: Geometry, snaplen: int):
        g = geometry
        self.geometry = geometry
        self.snaplen = snaplen
        self.head = 0
        self.headers: npt.NDArray[Any] = np.ndarray(
            (g.blocks, g.frames_per_block), FRAME_HEADER, buffer, strides=(g.block_size, g.frame_size)
        )
        self.bytes: UInt8s = np.ndarray(
            (g.blocks, g.frames_per_block, g.frame_size), np.uint8, buffer, strides=(g.block_size, g.frame_size, 1)
        )
        self.status: npt.NDArray[np.uint32] = self.headers["status"]
        self.columns = np.arange(snaplen)
        # row c: 0xff for the first c bytes, then 0 (a mask per caplen: zeroing by table, not by compare)
        self.keep: UInt8s = np.where(self.columns < np.arange(snaplen + 1)[:, None], 0xFF, 0).astype(np.uint8)

    def _positions(self, count: int) -> tuple[Int64s, Int64s]:
        """(block, slot) of the ``count`` frames from the read position on, wrapping at the ring's end."""
        index = (self.head + np.arange(count)) % self.geometry.frames
        return np.divmod(index, self.geometry.frames_per_block)

    def ready(self, limit: int) -> int:
        """How many frames from the read position on are the reader's, in one run, up to ``limit``. Looks
        at a few hundred statuses first, four times as many while all are ready: a read costs what it
        takes, not ``limit``."""
        g = self.geometry
        limit = min(limit, g.frames)
        block, slot = divmod(self.head, g.frames_per_block)
        if limit <= 0 or not self.status[block, slot] & TP_STATUS_USER:
            return 0
        window = min(FIRST_LOOK, limit)
        while True:
            ready = (self.status[self._positions(window)] & TP_STATUS_USER) != 0
            if not ready.all():
                return int(ready.argmin())
            if window == limit:
                return limit
            window = min(window * 4, limit)

    def read(self, limit: int) -> Batch:
        """Copy out the ready run of up to ``limit`` frames and hand those frames back to the kernel."""
        n = self.ready(limit)
        block, slot = self._positions(n)
        head = self.headers[block, slot]  # a copy of the n headers
        caplen = np.minimum(head["snaplen"], self.snaplen).astype(np.int64)
        frames = self._gather(block, slot, head["mac"].astype(np.int64))
        np.bitwise_and(frames, self.keep[caplen], out=frames)  # bytes past caplen are older packets'
        self.status[block, slot] = TP_STATUS_KERNEL
        self.head = (self.head + n) % self.geometry.frames
        return Batch(
            frames=frames,
            caplen=caplen,
            wire_len=head["len"].astype(np.int64),
            time_ns=head["sec"].astype(np.int64) * 1_000_000_000 + head["nsec"].astype(np.int64),
            outgoing=head["pkttype"] == PACKET_OUTGOING,
            software_stamp=(head["status"] & TP_STATUS_TS_SOFTWARE) != 0,
        )

    def _gather(self, block: Int64s, slot: Int64s, mac: Int64s) -> UInt8s:
        """The packets, ``snaplen`` bytes from each frame's ``tp_mac`` on, as one [n, snaplen] matrix."""
        n, width, frame_size = len(block), self.snaplen, self.geometry.frame_size
        if n and (mac == mac[0]).all():  # always so on one interface: one strided copy
            start = int(mac[0])
            kept = min(width, frame_size - start)
            out = self.bytes[block, slot, start : start + kept]
            return out if kept == width else np.pad(out, ((0, 0), (0, width - kept)))
        at = np.minimum(mac[:, None] + self.columns, frame_size - 1)
        gathered: UInt8s = self.bytes[block[:, None], slot[:, None], at]
        return gathered

    def detach(self) -> None:
        """Drop the views of the buffer (an mmap cannot close while numpy arrays point into it)."""
        self.headers = np.zeros((0, 0), FRAME_HEADER)
        self.bytes = np.zeros((0, 0, 0), np.uint8)
        self.status = self.headers["status"]


class PacketRing:
    """An ``AF_PACKET`` socket's receive ring: set up before the socket is bound, mapped, read in batches."""

    def __init__(self, sock: socket.socket, geometry: Geometry, snaplen: int):
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, geometry.request())
        self.geometry = geometry
        self.map = mmap.mmap(sock.fileno(), geometry.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.reader = RingReader(self.map, geometry, snaplen)

    @property
    def frames(self) -> int:
        return self.geometry.frames

    def read(self, limit: int) -> Batch:
        return self.reader.read(limit)

    def close(self) -> None:
        self.reader.detach()
        self.map.close()
