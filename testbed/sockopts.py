"""Linux socket constants the ``socket`` module does not export (values from <asm-generic/socket.h>,
<linux/in.h>, <linux/if_packet.h>, <linux/filter.h>), and the few socket set-ups every node process
repeats: marking DSCP, asking for arrival timestamps and the DSCP received, a large buffer."""

from __future__ import annotations

import socket
import struct
import sys

# <asm-generic/socket.h> (x86, arm64; not alpha, mips, parisc, sparc)
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
SO_ATTACH_FILTER = 26
SO_LOCK_FILTER = 44
SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD: a struct timespec of two 64-bit fields on 64-bit hosts
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
SO_MARK = 36
# <linux/in.h>
IP_TOS = 1
IP_RECVTOS = 13
IP_RECVTTL = 12  # Python 3.11 does not export it
# <linux/if_packet.h>, <linux/if_ether.h>
SOL_PACKET = 263
PACKET_RX_RING = 5  # takes a struct tpacket_req: block size, block count, frame size, frame count
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V2 = 1  # fixed-size frames, nanosecond timestamps
TPACKET_ALIGNMENT = 16  # frames and the packet inside them start on this boundary
PACKET_OUTGOING = 4  # sll_pkttype of a packet this host sends
ETH_P_ALL = 0x0003
# tp_status of a ring frame: who owns it and how it was stamped
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1 << 0
TP_STATUS_TS_SOFTWARE = 1 << 29  # tp_sec/tp_nsec are skb->tstamp, not a clock read in tpacket_rcv

TIMESPEC = struct.Struct("@qq")  # the SCM_TIMESTAMPNS payload: seconds, nanoseconds (CLOCK_REALTIME)
_FORCE = {socket.SO_RCVBUF: SO_RCVBUFFORCE, socket.SO_SNDBUF: SO_SNDBUFFORCE}


def family_of(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def mark_dscp(sock: socket.socket, dscp: int) -> None:
    """Send with DSCP ``dscp`` (IPv4 TOS or IPv6 traffic class; ECN bits zero)."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_TOS, dscp << 2)


def receive_tos(sock: socket.socket) -> None:
    """Ask for each datagram's TOS / traffic class as ancillary data (see ``tos_of``)."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)


def receive_timestamps(sock: socket.socket) -> None:
    """Ask for the kernel's arrival time of each datagram (CLOCK_REALTIME ns, see ``timestamp_ns``):
    immune to the receiving process being descheduled."""
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def timestamp_ns(level: int, kind: int, value: bytes) -> int | None:
    """The arrival time in one ancillary item, or None if the item is something else."""
    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
        seconds, nanoseconds = TIMESPEC.unpack_from(value)
        return int(seconds * 1_000_000_000 + nanoseconds)
    return None


def tos_of(level: int, kind: int, value: bytes) -> int | None:
    """The TOS byte in one ancillary item (IPv4: one byte; IPv6: an int), or None."""
    if (level, kind) in ((socket.IPPROTO_IP, IP_TOS), (socket.IPPROTO_IPV6, socket.IPV6_TCLASS)):
        return value[0] if len(value) == 1 else int.from_bytes(value[:4], sys.byteorder)
    return None


def big_buffer(sock: socket.socket, option: int, size: int) -> None:
    """A ``size``-byte SO_RCVBUF/SO_SNDBUF: root may exceed net.core.[rw]mem_max (the FORCE options);
    others get what the sysctl allows."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _FORCE[option], size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, option, size)
