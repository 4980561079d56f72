"""The tap's classic BPF program: the kernel passes only what may be RTP, truncated to the snap length.

The filter passes IPv4 UDP datagrams (first fragments or whole) with at least 12 payload bytes whose
first byte has version bits ``0b10`` (RFC 7983: 128-191 is RTP/RTCP; STUN starts with 0-3, DTLS with
20-63, the testbed's cross traffic with 0), or TURN ChannelData (64-127) carrying such a payload, and
returns the snap length so the kernel copies only the headers.
"""

from __future__ import annotations

import ctypes
import socket

from testbed.media.tap.frames import DEFAULT_SNAPLEN, ETH_HEADER, ETH_P_IP
from testbed.sockopts import SO_ATTACH_FILTER, SO_LOCK_FILTER

__all__ = ["Instruction", "SockFilter", "SockFprog", "attach_filter", "rtp_filter"]


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
    X, so IP options are handled. Through a TURN relay over UDP the RTP travels in ChannelData
    messages (RFC 8656: a 4-byte header whose first byte is 0x40-0x7f): those pass when the bytes
    after the header are RTP.
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
        (BPF_JMP | BPF_JEQ | BPF_K, "accept", 0, 0x80),  # RTP/RTCP version 2?
        (BPF_JMP | BPF_JEQ | BPF_K, 0, drop, 0x40),  # else TURN ChannelData (0x40-0x7f)?
        (BPF_LD | BPF_B | BPF_IND, 0, 0, ETH_HEADER + 8 + 4 + 11),  # its 12th inner byte: short ones drop
        (BPF_LD | BPF_B | BPF_IND, 0, 0, ETH_HEADER + 8 + 4),  # A = first byte inside the channel
        (BPF_ALU | BPF_AND | BPF_K, 0, 0, 0xC0),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, drop, 0x80),  # RTP/RTCP inside?
        (BPF_RET | BPF_K, 0, 0, snaplen),  # accept: truncated to snaplen
        (BPF_RET | BPF_K, 0, 0, 0),  # drop:
    ]
    target = len(program) - 1
    accept = target - 1

    def offset(at: int, jump: int | str) -> int:
        if jump == drop:
            return target - at - 1
        return accept - at - 1 if jump == "accept" else int(jump)

    return [(code, offset(at, jt), offset(at, jf), k) for at, (code, jt, jf, k) in enumerate(program)]


def attach_filter(sock: socket.socket, program: list[Instruction], lock: bool = True) -> None:
    """Attach a classic BPF program (SO_ATTACH_FILTER); the kernel copies it during the call."""
    instructions = (SockFilter * len(program))(*[SockFilter(*i) for i in program])
    fprog = SockFprog(len(program), ctypes.cast(instructions, ctypes.POINTER(SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(memoryview(fprog)))
    if lock:
        sock.setsockopt(socket.SOL_SOCKET, SO_LOCK_FILTER, 1)
