"""Per-packet truth, independent of aiortc: every RTP packet seen on one interface of a node.

A tap is its own process inside a node. It opens an ``AF_PACKET`` socket on one interface and records
each RTP packet leaving (``direction`` 1) and arriving (0) with the kernel's timestamp. Namespaces
share the host clock, so the one-way delay of a packet is (receiver tap time - sender tap time) for the
same (SSRC, sequence number); :func:`match_one_way` pairs them. SRTP leaves the RTP header in clear,
so this works on WebRTC media as well as on plain RTP.

- A classic BPF filter in the kernel passes only IPv4 UDP datagrams (first fragments or whole) with at
  least 12 payload bytes whose first byte has version bits ``0b10`` (RFC 7983: 128-191 is RTP/RTCP;
  STUN starts with 0-3, DTLS with 20-63, the testbed's cross traffic with 0). It returns the snap length,
  so the kernel copies only the headers.
- Timestamps: ``SO_TIMESTAMPNS`` (CLOCK_REALTIME, ns). Outgoing packets are stamped when the device
  transmits them (after the node's qdiscs, so after its shaper), incoming ones when the device receives.
- RTCP (second byte & 0x7f in 64..95, the RFC 5761 demultiplexing rule as WebRTC applies it) is counted
  and written to the pcap, not recorded.
- Output at stop: ``PREFIX.npz`` (one column per field, see :class:`TapRecords`) and ``PREFIX.pcap``
  (libpcap, nanosecond timestamps, Ethernet, truncated at the snap length; written as the tap runs and
  capped in size).

``python -m testbed.media.tap --interface IF --out PREFIX [--snaplen 200] [--pcap-limit-mb 256]`` prints
``{"event":"ready"}`` once capturing; on SIGTERM/SIGINT it writes its files, prints
``{"event":"done","packets":N,"rtcp":M,"dropped":K,...}`` and exits 0.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

# ---------------------------------------------------------------- kernel constants (linux/*.h)

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_LOCK_FILTER = 44
SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD: struct timespec of two 64-bit fields on 64-bit hosts
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
SO_RCVBUFFORCE = 33

ETH_HEADER = 14
DIRECTION_IN = 0
DIRECTION_OUT = 1
DEFAULT_SNAPLEN = 200
MIN_SNAPLEN = 96  # Ethernet + the longest IPv4 header (60) + UDP + the fixed RTP header
DEFAULT_PCAP_LIMIT_MB = 256
RECEIVE_BUFFER = 16 << 20
CHUNK = 4096  # packets parsed (vectorised) and written to the pcap at a time

PCAP_MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
PCAP_HEADER = struct.Struct("<IHHiIII")  # magic, major, minor, thiszone, sigfigs, snaplen, linktype
PCAP_RECORD = np.dtype([("sec", "<u4"), ("nsec", "<u4"), ("incl_len", "<u4"), ("orig_len", "<u4")])

# ---------------------------------------------------------------- classic BPF

BPF_LD, BPF_LDX, BPF_ALU, BPF_JMP, BPF_RET = 0x00, 0x01, 0x04, 0x05, 0x06
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_ABS, BPF_IND, BPF_MSH = 0x20, 0x40, 0xA0
BPF_JEQ, BPF_JSET = 0x10, 0x40
BPF_AND = 0x50
BPF_K = 0x00


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


Instruction = tuple[int, int, int, int]  # code, jt, jf, k


def rtp_filter(snaplen: int = DEFAULT_SNAPLEN) -> list[Instruction]:
    """The classic BPF program (on Ethernet frames): IPv4, UDP, not a later fragment, RTP version bits.

    Equivalent to tcpdump's ``ip and udp and ip[6:2] & 0x1fff = 0 and udp[8] & 0xc0 = 0x80`` plus a
    load of the 12th payload byte, which drops datagrams too short for an RTP header (a load past the
    end of the packet makes classic BPF return 0). ``ldxb 4*([14]&0xf)`` puts the IPv4 header length in
    X, so IP options are handled.
    """
    drop = "drop"  # jump targets are labels here, offsets below
    program: list[tuple[int, int | str, int | str, int]] = [
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, 12),  # A = ethertype
        (BPF_JMP | BPF_JEQ | BPF_K, 0, drop, ETH_P_IP),  # IPv4?
        (BPF_LD | BPF_B | BPF_ABS, 0, 0, 23),  # A = IP protocol
        (BPF_JMP | BPF_JEQ | BPF_K, 0, drop, 17),  # UDP?
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, 20),  # A = flags + fragment offset
        (BPF_JMP | BPF_JSET | BPF_K, drop, 0, 0x1FFF),  # a later fragment: no UDP header
        (BPF_LDX | BPF_B | BPF_MSH, 0, 0, ETH_HEADER),  # X = 4 * IHL
        (BPF_LD | BPF_B | BPF_IND, 0, 0, ETH_HEADER + 8 + 11),  # 12th payload byte: shorter ones drop
        (BPF_LD | BPF_B | BPF_IND, 0, 0, ETH_HEADER + 8),  # A = first payload byte
        (BPF_ALU | BPF_AND | BPF_K, 0, 0, 0xC0),  # its version bits
        (BPF_JMP | BPF_JEQ | BPF_K, 0, drop, 0x80),  # RTP/RTCP version 2?
        (BPF_RET | BPF_K, 0, 0, snaplen),  # accept, truncated to snaplen
        (BPF_RET | BPF_K, 0, 0, 0),  # drop:
    ]
    target = len(program) - 1

    def offset(at: int, jump: int | str) -> int:
        return target - at - 1 if jump == drop else int(jump)

    return [(code, offset(at, jt), offset(at, jf), k) for at, (code, jt, jf, k) in enumerate(program)]


def attach_filter(sock: socket.socket, program: list[Instruction], lock: bool = True) -> None:
    """Attach a classic BPF program (SO_ATTACH_FILTER); the kernel copies it during the call."""
    instructions = (SockFilter * len(program))(*[SockFilter(*i) for i in program])
    fprog = SockFprog(len(program), ctypes.cast(instructions, ctypes.POINTER(SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(memoryview(fprog)))
    if lock:
        sock.setsockopt(socket.SOL_SOCKET, SO_LOCK_FILTER, 1)


# ---------------------------------------------------------------- records

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


@dataclass(frozen=True)
class TapRecords:
    """One tap's RTP packets in capture order, one numpy array per field (see ``RECORD_FIELDS``)."""

    time_ns: np.ndarray
    direction: np.ndarray
    ssrc: np.ndarray
    seq: np.ndarray
    rtp_ts: np.ndarray
    pt: np.ndarray
    marker: np.ndarray
    size: np.ndarray
    dscp: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    payload: np.ndarray
    interface: str = ""
    rtcp: int = 0
    dropped: int = 0
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.time_ns)

    def select(self, mask: np.ndarray) -> TapRecords:
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

    def structured(self) -> np.ndarray:
        """The records as one numpy structured array."""
        table = np.empty(len(self), dtype=[(name, kind) for name, kind in RECORD_FIELDS.items()])
        for name in RECORD_FIELDS:
            table[name] = getattr(self, name)
        return table


def empty_columns() -> dict[str, np.ndarray]:
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


def save_records(path: str | Path, columns: dict[str, np.ndarray], meta: dict) -> None:
    np.savez(
        path,
        **{name: columns[name].astype(kind, copy=False) for name, kind in RECORD_FIELDS.items()},
        meta=np.array(json.dumps(meta)),
    )


# ---------------------------------------------------------------- sequence numbers and matching


def extended_sequence(seq: np.ndarray, reference: int | None = None) -> np.ndarray:
    """Extend 16-bit RTP sequence numbers (in arrival order) across rollover, as RFC 3550 A.1 does.

    Each packet is placed in the cycle that puts it nearest to the packet before it, so reordering and
    loss of up to 32767 packets are fine. The first packet lands in the cycle nearest to ``reference``
    (an extended number, e.g. the sender's first one) or in cycle 0. Result: int64, may be negative.
    """
    seq = np.asarray(seq, dtype=np.int64)
    if len(seq) == 0:
        return seq
    steps = (np.diff(seq) + 32768) % 65536 - 32768
    first = int(seq[0])
    if reference is not None:
        first = reference + ((first - reference + 32768) % 65536) - 32768
    return first + np.concatenate(([0], np.cumsum(steps)))


class OneWay(NamedTuple):
    """Packets of one SSRC seen at both taps: extended sequence number, send and receive tap times."""

    seq: np.ndarray
    send_ns: np.ndarray
    recv_ns: np.ndarray

    @property
    def delay_ms(self) -> np.ndarray:
        return (self.recv_ns - self.send_ns) / 1e6


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
    cycles. Duplicates count once (the first copy). Sorted by extended sequence number; packets sent
    but never received are absent (``len(sent) - len(matched)`` is the loss). For a tap between the two
    (e.g. on a router), pass its ``send_direction``/``receive_direction``.
    """
    sent = sender.stream(ssrc, send_direction)
    received = receiver.stream(ssrc, receive_direction)
    sent_ext = extended_sequence(sent.seq)
    received_ext = extended_sequence(received.seq, int(sent_ext[0]) if len(sent_ext) else None)
    sent_keys, sent_first = np.unique(sent_ext, return_index=True)
    received_keys, received_first = np.unique(received_ext, return_index=True)
    keys, in_sent, in_received = np.intersect1d(sent_keys, received_keys, assume_unique=True, return_indices=True)
    return OneWay(
        keys.astype(np.int64),
        sent.time_ns[sent_first[in_sent]].astype(np.int64),
        received.time_ns[received_first[in_received]].astype(np.int64),
    )


# ---------------------------------------------------------------- parsing (vectorised)


def _u16(frames: np.ndarray, rows: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (frames[rows, at].astype(np.uint32) << 8) | frames[rows, at + 1]


def _u32(frames: np.ndarray, rows: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (_u16(frames, rows, at) << 16) | _u16(frames, rows, at + 2)


@dataclass
class Parsed:
    columns: dict[str, np.ndarray]  # RTP packets only (``RECORD_FIELDS`` without time and direction)
    rtp: np.ndarray  # mask over the input rows
    rtcp: np.ndarray
    orig_len: np.ndarray  # frame length on the wire (Ethernet header + IP total length)


def parse_frames(frames: np.ndarray, caplen: np.ndarray) -> Parsed:
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
    rtp = udp + 8
    udp_len = _u16(frames, rows, np.minimum(udp + 4, width - 2)).astype(np.int64)
    first, second = frames[rows, np.minimum(rtp, width - 1)], frames[rows, np.minimum(rtp + 1, width - 1)]
    ok = (
        (ethertype == ETH_P_IP)
        & (version_ihl >> 4 == 4)
        & (ihl >= 20)
        & (frames[:, 23] == 17)
        & (_u16(frames, rows, zero + 20) & 0x1FFF == 0)
        & (caplen >= rtp + 12)
        & (udp_len >= 8 + 12)
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
        "payload": udp_len[is_rtp] - 8 - header,
    }
    columns = {name: values.astype(RECORD_FIELDS[name]) for name, values in columns.items()}
    return Parsed(columns, is_rtp, rtcp, orig_len)


# ---------------------------------------------------------------- pcap


def pcap_header(snaplen: int) -> bytes:
    """libpcap file header: nanosecond timestamps (magic 0xa1b23c4d), version 2.4, Ethernet."""
    return PCAP_HEADER.pack(PCAP_MAGIC_NS, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET)


def pcap_records(time_ns: np.ndarray, frames: np.ndarray, caplen: np.ndarray, orig_len: np.ndarray) -> bytes:
    """The pcap records (16-byte header + captured bytes) of a batch of frames, built without a Python loop."""
    n, width = frames.shape
    heads = np.empty(n, dtype=PCAP_RECORD)
    time_ns = np.asarray(time_ns, dtype=np.int64)
    heads["sec"] = time_ns // 1_000_000_000
    heads["nsec"] = time_ns % 1_000_000_000
    heads["incl_len"] = caplen
    heads["orig_len"] = orig_len
    table = np.concatenate((heads.view(np.uint8).reshape(n, PCAP_RECORD.itemsize), frames), axis=1)
    keep = np.arange(table.shape[1]) < (PCAP_RECORD.itemsize + np.asarray(caplen))[:, None]
    return table[keep].tobytes()


class PcapWriter:
    """Appends records to a pcap file until ``limit`` bytes; past it, packets are counted, not written."""

    def __init__(self, path: str | Path, snaplen: int, limit: int):
        self.file = open(path, "wb")  # noqa: SIM115 - held open across writes, closed by close()
        self.file.write(pcap_header(snaplen))
        self.written = PCAP_HEADER.size
        self.limit = limit
        self.skipped = 0

    def write(self, time_ns: np.ndarray, frames: np.ndarray, caplen: np.ndarray, orig_len: np.ndarray) -> None:
        sizes = PCAP_RECORD.itemsize + np.asarray(caplen, dtype=np.int64)
        fits = int(np.searchsorted(self.written + np.cumsum(sizes), self.limit, side="right"))
        if fits:
            self.file.write(pcap_records(time_ns[:fits], frames[:fits], caplen[:fits], orig_len[:fits]))
            self.written += int(sizes[:fits].sum())
        self.skipped += len(sizes) - fits

    def close(self) -> None:
        self.file.close()


# ---------------------------------------------------------------- the capture process


class Tap:
    """The capture loop: raw frames go into a fixed buffer, parsed and written ``CHUNK`` at a time."""

    def __init__(
        self,
        interface: str,
        out_prefix: str | Path,
        snaplen: int = DEFAULT_SNAPLEN,
        pcap_limit: int = DEFAULT_PCAP_LIMIT_MB << 20,
    ):
        if snaplen < MIN_SNAPLEN:
            raise ValueError(f"snaplen {snaplen} is below {MIN_SNAPLEN}, too short for IPv4+UDP+RTP headers")
        self.interface = interface
        self.prefix = Path(out_prefix)
        self.snaplen = snaplen
        self.buffer = bytearray(CHUNK * snaplen)
        view = memoryview(self.buffer)
        self.slots = [[view[i * snaplen : (i + 1) * snaplen]] for i in range(CHUNK)]
        self.frames = np.frombuffer(self.buffer, dtype=np.uint8).reshape(CHUNK, snaplen)
        self.stamps: list[bytes] = []
        self.kinds: list[int] = []
        self.lengths: list[int] = []
        self.chunks: list[dict[str, np.ndarray]] = []
        self.captured = 0
        self.rtcp = 0
        self.other = 0
        self.stopping = False
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: nothing arrives yet
        try:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
            except PermissionError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            attach_filter(self.sock, rtp_filter(snaplen))
            self.sock.bind((interface, ETH_P_ALL))  # from here on, only filtered frames of this interface
            self.sock.setblocking(False)
            self.pcap = PcapWriter(self.prefix.with_name(self.prefix.name + ".pcap"), snaplen, pcap_limit)
        except BaseException:
            self.sock.close()
            raise
        self.started_ns = time.time_ns()

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(self, wakeup: int | None = None) -> None:
        """Capture until :meth:`stop` (called from a signal handler), then read what the kernel had
        already queued (at most one more chunk if packets keep coming faster than they are read)."""
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        if wakeup is not None:
            selector.register(wakeup, selectors.EVENT_READ)
        recv = self.sock.recvmsg_into
        slots, stamps, kinds, lengths = self.slots, self.stamps, self.kinds, self.lengths
        ancillary_size = socket.CMSG_SPACE(16)
        while True:
            try:
                while True:  # read until the queue is empty: no poll per packet under load
                    i = len(lengths)
                    n, ancillary, _, address = recv(slots[i], ancillary_size)
                    stamps.append(ancillary[0][2] if ancillary else _now_timespec())
                    kinds.append(address[2])
                    lengths.append(n)
                    if i + 1 == CHUNK:
                        self.flush()
                        if self.stopping:
                            raise _Overloaded
            except BlockingIOError:
                if self.stopping:
                    break
                for key, _ in selector.select(timeout=1.0):
                    if key.fd == wakeup:
                        _drain(wakeup)
            except _Overloaded:
                break
        selector.close()
        self.flush()

    def flush(self) -> None:
        n = len(self.lengths)
        if n == 0:
            return
        stamps = np.frombuffer(b"".join(self.stamps), dtype=np.int64).reshape(n, 2)
        time_ns = stamps[:, 0] * 1_000_000_000 + stamps[:, 1]
        direction = (np.array(self.kinds, dtype=np.uint8) == PACKET_OUTGOING).astype(np.uint8)
        caplen = np.array(self.lengths, dtype=np.int64)
        frames = self.frames[:n]
        parsed = parse_frames(frames, caplen)
        self.pcap.write(time_ns, frames, caplen, parsed.orig_len)
        chunk = dict(parsed.columns, time_ns=time_ns[parsed.rtp], direction=direction[parsed.rtp])
        self.chunks.append(chunk)
        self.captured += n
        rtcp = int(parsed.rtcp.sum())
        self.rtcp += rtcp
        self.other += n - rtcp - int(parsed.rtp.sum())
        self.stamps.clear()
        self.kinds.clear()
        self.lengths.clear()

    def statistics(self) -> tuple[int, int]:
        """(packets that passed the filter, packets dropped for a full receive buffer); resets them."""
        packets, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        return packets, drops

    def finish(self) -> dict:
        """Close the socket, write ``PREFIX.npz``, close the pcap; return the summary."""
        passed, dropped = self.statistics()
        self.sock.close()
        self.pcap.close()
        columns = (
            {name: np.concatenate([c[name] for c in self.chunks]) for name in RECORD_FIELDS}
            if self.chunks
            else empty_columns()
        )
        summary = {
            "packets": int(len(columns["time_ns"])),
            "rtcp": self.rtcp,
            "dropped": dropped,
            "other": self.other,
            "kernel_passed": passed,
            "pcap_bytes": self.pcap.written,
            "pcap_skipped": self.pcap.skipped,
        }
        meta = dict(
            summary,
            interface=self.interface,
            snaplen=self.snaplen,
            started_ns=self.started_ns,
            stopped_ns=time.time_ns(),
        )
        save_records(self.prefix.with_name(self.prefix.name + ".npz"), columns, meta)
        return summary


class _Overloaded(Exception):
    """Stop requested while packets still arrive faster than they are read."""


def _now_timespec() -> bytes:
    return struct.pack("qq", *divmod(time.time_ns(), 1_000_000_000))


def _drain(fd: int) -> None:
    try:
        os.read(fd, 512)
    except BlockingIOError:
        pass


def tap_command(
    interface: str,
    out_prefix: str | Path,
    snaplen: int = DEFAULT_SNAPLEN,
    pcap_limit_mb: int = DEFAULT_PCAP_LIMIT_MB,
    python: str = sys.executable,
) -> list[str]:
    """The argv that runs a tap (start it inside the node, e.g. with ``node.popen``)."""
    return [
        python,
        "-m",
        "testbed.media.tap",
        "--interface",
        interface,
        "--out",
        str(out_prefix),
        "--snaplen",
        str(snaplen),
        "--pcap-limit-mb",
        str(pcap_limit_mb),
    ]


def emit(event: str, **values: object) -> None:
    print(json.dumps({"event": event, **values}, separators=(",", ":")), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.media.tap", description=__doc__.split("\n")[0])
    parser.add_argument("--interface", required=True, help="interface of this node to capture on")
    parser.add_argument("--out", required=True, help="output prefix: PREFIX.npz and PREFIX.pcap")
    parser.add_argument("--snaplen", type=int, default=DEFAULT_SNAPLEN, help="bytes kept per packet")
    parser.add_argument(
        "--pcap-limit-mb",
        type=int,
        default=DEFAULT_PCAP_LIMIT_MB,
        help="stop writing the pcap past this size (records go on)",
    )
    args = parser.parse_args(argv)
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    tap: Tap | None = None

    def stop(signum: int, frame: object) -> None:
        if tap is not None:
            tap.stop()
        else:
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        tap = Tap(args.interface, args.out, args.snaplen, args.pcap_limit_mb << 20)
    except (OSError, ValueError) as error:
        code = 3 if isinstance(error, PermissionError) else 2
        hint = " (needs CAP_NET_RAW: run as root)" if code == 3 else ""
        emit("error", message=f"tap on {args.interface!r}: {error}{hint}")
        return code
    emit("ready", interface=args.interface)
    tap.run(read_end)
    summary = tap.finish()
    summary["cpu_seconds"] = round(time.process_time(), 3)
    emit("done", **summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
