"""``sendmmsg`` and ``recvmmsg`` through ctypes (CPython's socket module has neither), over buffers
allocated once: one system call moves a whole batch of datagrams, and numpy views of the headers let
the caller fill or read a batch without a Python loop per packet.

Layouts are x86-64/aarch64 Linux (LP64): ``struct msghdr`` is 56 bytes, ``struct mmsghdr`` 64,
``struct iovec`` 16, ``struct sockaddr_in`` 16.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MSG_DONTWAIT", "Receiver", "Sender", "sockaddr_in"]

MSG_DONTWAIT = 0x40
_RTP = struct.Struct("!BBHII")
_UINT, _INT, _UINT_BE = struct.Struct("I"), struct.Struct("i"), struct.Struct("!I")
_TIMESPEC = struct.Struct("qq")
SCM_TIMESTAMPNS = 35  # SO_TIMESTAMPNS's control message type (asm-generic)
CMSG_SPACE_TIMESPEC = 32  # cmsghdr (16) + struct timespec (16)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_Iovec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


_libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
_libc.sendmmsg.restype = ctypes.c_int
_libc.recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
_libc.recvmmsg.restype = ctypes.c_int

MMSGHDR_SIZE = ctypes.sizeof(_Mmsghdr)
assert MMSGHDR_SIZE == 64 and ctypes.sizeof(_Iovec) == 16, "an unexpected ABI: mmsghdr/iovec sizes differ"


def sockaddr_in(address: str, port: int = 0) -> bytes:
    """A ``struct sockaddr_in`` as bytes."""
    return socket.AF_INET.to_bytes(2, "little") + port.to_bytes(2, "big") + socket.inet_aton(address) + bytes(8)


def _bytes(headers: Any, rows: int) -> npt.NDArray[np.uint8]:
    """An array of ``mmsghdr`` as a [rows, 64] byte matrix sharing its memory."""
    return np.frombuffer(memoryview(headers).cast("B"), dtype=np.uint8).reshape(rows, MMSGHDR_SIZE)


def _address(buffer: Any) -> int:
    return ctypes.addressof(buffer)


class Sender:
    """A batch sender over ``rows`` preallocated datagram buffers of ``width`` bytes (one per stream):
    the caller writes packets into ``data[row]`` and their lengths, then sends any set of rows in one
    ``sendmmsg``. Each row has its own destination (``set_destination``)."""

    def __init__(self, fd: int, rows: int, width: int):
        self.fd = fd
        self.rows, self.width = rows, width
        self._data = (ctypes.c_uint8 * (rows * width))()
        self.data: npt.NDArray[np.uint8] = np.ctypeslib.as_array(self._data).reshape(rows, width)
        self._names = (ctypes.c_uint8 * (rows * 16))()
        self.names = np.ctypeslib.as_array(self._names).reshape(rows, 16)
        self._iov = (_Iovec * rows)()
        self._iov_view = np.ctypeslib.as_array(ctypes.cast(self._iov, ctypes.POINTER(ctypes.c_uint64)), (rows, 2))
        self._template = (_Mmsghdr * rows)()  # row i's header, pointing at its iovec and name
        base, names = _address(self._data), _address(self._names)
        for row in range(rows):
            self._iov[row].base = base + row * width
            self._template[row].hdr.name = names + row * 16
            self._template[row].hdr.namelen = 16
            self._template[row].hdr.iov = ctypes.pointer(self._iov[row])
            self._template[row].hdr.iovlen = 1
        self._template_view = np.frombuffer(memoryview(self._template).cast("B"), dtype=np.uint8).reshape(
            rows, MMSGHDR_SIZE
        )
        self._batch = (_Mmsghdr * rows)()
        self._batch_view = np.frombuffer(memoryview(self._batch).cast("B"), dtype=np.uint8).reshape(rows, MMSGHDR_SIZE)

    def set_destination(self, row: int, address: str, port: int = 0) -> None:
        self.names[row] = np.frombuffer(sockaddr_in(address, port), dtype=np.uint8)

    def send(self, rows: npt.NDArray[np.intp], lengths: npt.NDArray[Any]) -> tuple[int, int]:
        """Send ``rows`` (their first ``lengths`` bytes); (datagrams sent, datagrams refused). A datagram
        the kernel refuses (a firewall's reject, no route) is skipped and the rest still go."""
        count = len(rows)
        if count == 0:
            return 0, 0
        self._iov_view[rows, 1] = lengths
        self._batch_view[:count] = self._template_view[rows]
        sent = refused = 0
        start = 0
        while start < count:
            done = _libc.sendmmsg(self.fd, _address(self._batch) + start * MMSGHDR_SIZE, count - start, 0)
            if done < 0:
                error = ctypes.get_errno()
                if error == 4:  # EINTR
                    continue
                refused += 1  # the first datagram of what is left failed: skip it
                start += 1
                continue
            sent += done
            start += done
            if start < count:  # stopped short: the next datagram fails on the next call
                continue
        return sent, refused


class Receiver:
    """Reads up to ``batch`` datagrams from a socket in one ``recvmmsg``, with each one's kernel receive
    time (the socket needs ``SO_TIMESTAMPNS``) and source address, into buffers allocated once."""

    def __init__(self, batch: int = 32, width: int = 512):
        self.batch, self.width = batch, width
        self._data = (ctypes.c_uint8 * (batch * width))()
        self.data = np.ctypeslib.as_array(self._data).reshape(batch, width)
        self._names = (ctypes.c_uint8 * (batch * 16))()
        self.names = np.ctypeslib.as_array(self._names).reshape(batch, 16)
        self._control = (ctypes.c_uint8 * (batch * CMSG_SPACE_TIMESPEC))()
        self.control = np.ctypeslib.as_array(self._control).reshape(batch, CMSG_SPACE_TIMESPEC)
        self._iov = (_Iovec * batch)()
        self._msgs = (_Mmsghdr * batch)()
        self._msgs_view = np.frombuffer(memoryview(self._msgs).cast("B"), dtype=np.uint8).reshape(batch, MMSGHDR_SIZE)
        for i in range(batch):
            self._iov[i].base = _address(self._data) + i * width
            self._iov[i].len = width
            header = self._msgs[i].hdr
            header.name = _address(self._names) + i * 16
            header.iov = ctypes.pointer(self._iov[i])
            header.iovlen = 1
            header.control = _address(self._control) + i * CMSG_SPACE_TIMESPEC
        buffer = memoryview(self._msgs).cast("B")  # msg_namelen and msg_controllen of every message
        self._namelen = np.ndarray((batch,), np.uint32, buffer, offset=8, strides=(MMSGHDR_SIZE,))
        self._controllen = np.ndarray((batch,), np.uint64, buffer, offset=40, strides=(MMSGHDR_SIZE,))
        self._used = batch

    def receive(self, fd: int) -> int:
        """Datagrams read now (0 when none is waiting); never blocks."""
        self._namelen[: self._used] = 16  # the kernel overwrote these in the messages it filled
        self._controllen[: self._used] = CMSG_SPACE_TIMESPEC
        count = _libc.recvmmsg(fd, _address(self._msgs), self.batch, MSG_DONTWAIT, None)
        if count < 0:
            error = ctypes.get_errno()
            if error in (11, 4):  # EAGAIN, EINTR
                return 0
            raise OSError(error, os.strerror(error))
        self._used = int(count)
        return self._used

    def headers(self, count: int) -> list[tuple[int, int, int, int, int, int, int]]:
        """Per datagram read: (length, first byte, second byte, RTP sequence number, timestamp, SSRC,
        kernel receive time in ns or 0), unpacked with ``struct`` from one copy of each buffer."""
        data = bytes(self._data)[: count * self.width]
        control = bytes(self._control)[: count * CMSG_SPACE_TIMESPEC]
        messages = bytes(self._msgs)[: count * MMSGHDR_SIZE]
        rows = []
        for i in range(count):
            length = _UINT.unpack_from(messages, i * MMSGHDR_SIZE + 56)[0]
            first, second, seq, stamp, ssrc = _RTP.unpack_from(data, i * self.width)
            kind = _INT.unpack_from(control, i * CMSG_SPACE_TIMESPEC + 12)[0]
            seconds, nanoseconds = _TIMESPEC.unpack_from(control, i * CMSG_SPACE_TIMESPEC + 16)
            arrival = seconds * 1_000_000_000 + nanoseconds if kind == SCM_TIMESTAMPNS else 0
            rows.append((length, first, second, seq, stamp, ssrc, arrival))
        return rows

    def sr_middle(self, index: int) -> int:
        """The middle 32 bits of a sender report's NTP time (what the next receiver report's LSR echoes)."""
        return int(_UINT_BE.unpack_from(bytes(self.data[index, 10:14]))[0])

    def lengths(self, count: int) -> npt.NDArray[np.uint32]:
        lengths: npt.NDArray[np.uint32] = self._msgs_view[:count, 56:60].copy().view(np.uint32).ravel()
        return lengths

    def times_ns(self, count: int) -> npt.NDArray[np.int64]:
        """Each datagram's kernel receive time (CLOCK_REALTIME ns; 0 where the socket gave none)."""
        control = self.control[:count]
        kind = control[:, 12:16].copy().view(np.int32).ravel()
        stamps = control[:, 16:32].copy().view(np.int64).reshape(count, 2)
        return np.where(kind == SCM_TIMESTAMPNS, stamps[:, 0] * 1_000_000_000 + stamps[:, 1], 0)

    def source(self, index: int) -> tuple[str, int]:
        name = bytes(self.names[index])
        return socket.inet_ntoa(name[4:8]), int.from_bytes(name[2:4], "big")
