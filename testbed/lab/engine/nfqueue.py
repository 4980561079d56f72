"""A pure-Python nfnetlink_queue client: the packet I/O of the userspace impairment engine.

An iptables ``NFQUEUE --queue-num N`` rule hands every matching packet to the process bound to queue
``N`` in that network namespace; the packet waits in the kernel until the process issues a verdict
(accept, drop, or accept with a new payload). Holding the verdict is how the engine delays packets.

One module on purpose (over the 400-line guide): the message layout, the batched verdicts and the
queue statistics are one protocol whose constants must stay together.

The wire format (``<linux/netfilter/nfnetlink_queue.h>``) is small enough to speak directly over a
``NETLINK_NETFILTER`` socket with ``struct``: no C build, no libnetfilter_queue.

Kernel facts this module relies on (checked on 6.18 and in the kernel source):
- Each queued packet is its own netlink datagram; a verdict re-injects the packet synchronously, so
  packets leave in the order their verdicts are sent, whatever order they were queued in.
- NFQA_TIMESTAMP is only sent for the PREROUTING, INPUT and FORWARD hooks (kernel commit 916f6efae623,
  2019), and only when the kernel stamps received packets at all, which it does only while some
  socket on the host has asked for timestamps (the global ``netstamp_needed`` switch). ``NfQueue``
  sets SO_TIMESTAMPNS on its own netlink socket to flip that switch (``kernel_timestamps=True``; the
  netlink socket itself never gets ancillary data). Packets queued on OUTPUT or POSTROUTING, i.e.
  every locally generated packet and every packet caught on egress, never carry a timestamp:
  ``timestamp_ns`` is None there and ``received_ns`` (CLOCK_MONOTONIC, read right after recv) is
  the clock to measure the hold time from.
- Without NFQA_CFG_F_GSO the kernel segments GSO packets and completes partial checksums before
  queueing, so every payload is one wire-sized packet with a valid checksum.
- A verdict with a payload replaces the packet bytes as they are: fix the checksums you break
  (for UDP over IPv4 a zero UDP checksum means "none"), and never hand back a payload cut short by
  ``copy_range`` (the kernel caps it at 65531 bytes).
- A held, locally generated packet still counts against its socket's send buffer: a sender whose
  packets are held long enough blocks in send() (as it would behind a full qdisc) rather than losing
  them. A packet only ever leaves with a verdict, so keep verdicting until senders are done.
- Packets still queued when the queue is unbound or the socket closes are dropped by the kernel.
"""

from __future__ import annotations

import errno as errno_codes
import itertools
import os
import select
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from testbed.errors import TestbedError
from testbed.sockopts import SO_TIMESTAMPNS, big_buffer

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
NETLINK_EXT_ACK = 11

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_ACK_TLVS = 0x200  # the error message carries extended-ack attributes
NLM_F_CAPPED = 0x100  # the error message does not echo the request's payload
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4
NLMSGERR_ATTR_MSG = 1
NLA_TYPE_MASK = 0x3FFF

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 1, 2, 3
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_MARK, NFQA_TIMESTAMP, NFQA_PAYLOAD = 1, 2, 3, 4, 10
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQNL_COPY_PACKET = 2
NFQA_CFG_F_FAIL_OPEN = 1 << 0
NFQA_CFG_F_GSO = 1 << 2
NF_DROP, NF_ACCEPT = 0, 1

HOOK_NAMES = {0: "PREROUTING", 1: "INPUT", 2: "FORWARD", 3: "OUTPUT", 4: "POSTROUTING"}
COUNTERS_PATH = "/proc/thread-self/net/netfilter/nfnetlink_queue"  # thread-self: the caller's namespace

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, portid (host order)
_NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (queue number, big-endian)
_NLATTR = struct.Struct("=HH")  # len, type
_PACKET_HDR = struct.Struct("!IHB")  # packet_id, hw_protocol, hook
_TIMESTAMP = struct.Struct("!QQ")  # sec, usec
_BE32 = struct.Struct("!I")
_ERRNO = struct.Struct("=i")
_HEADER_LEN = _NLMSGHDR.size + _NFGENMSG.size
_RECV_BUFFER = 256 * 1024  # one datagram: a 64 KiB packet plus its attributes fits easily
_FLUSH_BYTES = 64 * 1024  # send buffered verdicts before one datagram grows past this


class NfQueueError(OSError, TestbedError):
    """The kernel refused a queue request, or the queue lost packets; the message says what and why.
    An OSError (with its errno) and a TestbedError (the testbed failed)."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


@dataclass(slots=True)
class QueuedPacket:
    """One packet waiting in the kernel for a verdict."""

    packet_id: int
    payload: bytes  # the IP packet (copy mode packet)
    timestamp_ns: int | None  # kernel receive timestamp (NFQA_TIMESTAMP), CLOCK_REALTIME ns; None if absent
    hw_protocol: int  # e.g. 0x0800
    mark: int
    hook: int
    received_ns: int = 0  # CLOCK_MONOTONIC when this process read it: the clock to use without a timestamp


def _attr(kind: int, value: bytes) -> bytes:
    length = _NLATTR.size + len(value)
    return _NLATTR.pack(length, kind) + value + b"\0" * (-length & 3)


def _error_name(code: int) -> str:
    return f"{errno_codes.errorcode.get(code, f'errno {code}')} ({os.strerror(code)})"


class NfQueue:
    """A bound nfnetlink queue in the caller's network namespace.

    Create it on a thread inside the namespace (``netns.run_in(path, lambda: NfQueue(3))``); the
    socket stays there and may then be used from any one thread. Verdicts are buffered and sent
    together by ``flush()`` (``receive()`` and ``close()`` flush first), one send() for many packets.
    """

    def __init__(
        self,
        queue_num: int,
        *,
        max_len: int = 10_000,
        copy_range: int = 0xFFFF,
        fail_open: bool = False,
        receive_buffer: int = 8 * 1024 * 1024,
        kernel_timestamps: bool = True,
    ):
        """``kernel_timestamps``: ask the kernel to stamp every received packet (see module docstring)."""
        if not 0 <= queue_num <= 0xFFFF:
            raise ValueError(f"queue number {queue_num} is outside 0..65535")
        self.queue_num = queue_num
        self._seq = itertools.count(1)
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._pending: list[QueuedPacket] = []  # packets read while waiting for an ACK, or before an error
        self._errors: list[NfQueueError] = []  # kernel refusals of earlier verdicts, raised by receive()
        self._buffer = bytearray(_RECV_BUFFER)
        self._closed = False
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self._sock.bind((0, 0))
            self.portid: int = self._sock.getsockname()[0]
            self._set_receive_buffer(receive_buffer)
            self.reports_enobufs = not self._try_option(NETLINK_NO_ENOBUFS)
            self._try_option(NETLINK_EXT_ACK)  # the kernel's own words in error messages
            if kernel_timestamps:
                self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self._sock.setblocking(False)
            self._poll = select.poll()
            self._poll.register(self._sock, select.POLLIN)
            flags = NFQA_CFG_F_FAIL_OPEN if fail_open else 0
            self._request(
                NFQNL_MSG_CONFIG,
                _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0))
                + _attr(NFQA_CFG_PARAMS, struct.pack("!IB", copy_range, NFQNL_COPY_PACKET))
                + _attr(NFQA_CFG_QUEUE_MAXLEN, _BE32.pack(max_len))
                # the mask names every flag we decide on, so GSO super-packets are explicitly refused
                + _attr(NFQA_CFG_MASK, _BE32.pack(NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO))
                + _attr(NFQA_CFG_FLAGS, _BE32.pack(flags)),
                f"binding NFQUEUE {queue_num}",
            )
        except BaseException:
            self._sock.close()
            self._closed = True
            raise

    # ------------------------------------------------------------ socket set-up

    def _set_receive_buffer(self, size: int) -> None:
        """A large buffer absorbs bursts while the engine sleeps; FORCE lifts rmem_max (needs root)."""
        big_buffer(self._sock, socket.SO_RCVBUF, size)

    def _try_option(self, option: int) -> bool:
        try:
            self._sock.setsockopt(SOL_NETLINK, option, 1)
            return True
        except OSError:
            return False

    def fileno(self) -> int:
        """For selectors and event loops: readable when packets (or kernel errors) are waiting."""
        return self._sock.fileno()

    # ------------------------------------------------------------ receiving

    def receive(self, timeout: float | None = None, max_packets: int = 256) -> list[QueuedPacket]:
        """Packets queued since the last call, at most ``max_packets``; [] when none came within ``timeout``.

        Waits only for the first packet, then takes what is already there without blocking. A kernel
        error about an earlier verdict raises NfQueueError here; packets read with it are kept for the
        next call.
        """
        self.flush()
        packets = self._pending[:max_packets]
        del self._pending[:max_packets]
        if (
            not packets
            and not self._errors
            and not self._poll.poll(None if timeout is None else max(0.0, timeout) * 1000)
        ):
            return []
        while len(packets) < max_packets and not self._errors:
            try:
                size = self._sock.recv_into(self._buffer, _RECV_BUFFER, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as error:
                if error.errno != errno_codes.ENOBUFS:
                    raise
                self._errors.append(
                    NfQueueError(
                        errno_codes.ENOBUFS,
                        f"NFQUEUE {self.queue_num}: the socket's receive buffer overflowed and the kernel "
                        "dropped packets; issue verdicts faster or pass a larger receive_buffer",
                    )
                )
                break
            self._parse(size, packets, received_ns=time.monotonic_ns())
        if len(packets) > max_packets:
            self._pending[:0] = packets[max_packets:]
            del packets[max_packets:]
        if self._errors:
            self._pending[:0] = packets
            raise self._errors.pop(0)
        return packets

    def _parse(
        self, size: int, packets: list[QueuedPacket], waiting_seq: int = -1, waiting_for: str = "", received_ns: int = 0
    ) -> tuple[bool, NfQueueError | None]:
        """Append the datagram's packets to ``packets``; keep kernel errors for other requests in
        ``self._errors``. Returns whether request ``waiting_seq`` was answered, and its error if refused."""
        buffer, offset = self._buffer, 0
        answered, refusal = False, None
        while offset + _NLMSGHDR.size <= size:
            length, kind, _flags, seq, _portid = _NLMSGHDR.unpack_from(buffer, offset)
            if length < _NLMSGHDR.size or offset + length > size:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                packet = self._parse_packet(buffer, offset + _HEADER_LEN, offset + length)
                packet.received_ns = received_ns or time.monotonic_ns()
                packets.append(packet)
            elif kind == NLMSG_ERROR:
                code = -_ERRNO.unpack_from(buffer, offset + _NLMSGHDR.size)[0]
                if seq == waiting_seq:
                    answered, refusal = True, self._error(code, offset, length, waiting_for) if code else None
                elif code:
                    self._errors.append(self._error(code, offset, length))
            elif kind == NLMSG_OVERRUN:
                self._errors.append(NfQueueError(errno_codes.ENOBUFS, f"NFQUEUE {self.queue_num}: netlink overrun"))
            offset += (length + 3) & ~3
        return answered, refusal

    @staticmethod
    def _parse_packet(buffer: bytearray, offset: int, end: int) -> QueuedPacket:
        packet_id = hw_protocol = hook = mark = 0
        timestamp_ns = None
        payload = b""
        while offset + _NLATTR.size <= end:
            length, kind = _NLATTR.unpack_from(buffer, offset)
            if length < _NLATTR.size:
                break
            kind &= NLA_TYPE_MASK
            start = offset + _NLATTR.size
            if kind == NFQA_PACKET_HDR:
                packet_id, hw_protocol, hook = _PACKET_HDR.unpack_from(buffer, start)
            elif kind == NFQA_PAYLOAD:
                payload = bytes(buffer[start : offset + length])
            elif kind == NFQA_TIMESTAMP:
                seconds, microseconds = _TIMESTAMP.unpack_from(buffer, start)
                timestamp_ns = seconds * 1_000_000_000 + microseconds * 1000
            elif kind == NFQA_MARK:
                mark = _BE32.unpack_from(buffer, start)[0]
            offset += (length + 3) & ~3
        return QueuedPacket(packet_id, payload, timestamp_ns, hw_protocol, mark, hook)

    def _describe_request(self, offset: int, length: int) -> str:
        """Name the request an error answers, from the copy of it the kernel echoes back."""
        echoed = offset + _NLMSGHDR.size + _ERRNO.size
        flags = _NLMSGHDR.unpack_from(self._buffer, offset)[2]
        if flags & NLM_F_CAPPED or echoed + _HEADER_LEN > offset + length:
            return f"a request to NFQUEUE {self.queue_num}"
        request_length, kind = _NLMSGHDR.unpack_from(self._buffer, echoed)[:2]
        message = kind & 0xFF
        if message in (NFQNL_MSG_VERDICT, NFQNL_MSG_VERDICT_BATCH):
            attrs, end = echoed + _HEADER_LEN, min(echoed + request_length, offset + length)
            while attrs + _NLATTR.size <= end:
                attr_length, attr_kind = _NLATTR.unpack_from(self._buffer, attrs)
                if attr_length < _NLATTR.size:
                    break
                if attr_kind & NLA_TYPE_MASK == NFQA_VERDICT_HDR:
                    verdict, packet_id = struct.unpack_from("!II", self._buffer, attrs + _NLATTR.size)
                    what = "verdict" if message == NFQNL_MSG_VERDICT else "batch verdict up to"
                    action = "accept" if verdict == NF_ACCEPT else "drop"
                    return f"{what} packet {packet_id} ({action}) on NFQUEUE {self.queue_num}"
                attrs += (attr_length + 3) & ~3
            return f"a verdict on NFQUEUE {self.queue_num}"
        if message == NFQNL_MSG_CONFIG:
            return f"configuring NFQUEUE {self.queue_num}"
        return f"a request to NFQUEUE {self.queue_num}"

    def _error(self, code: int, offset: int, length: int, what: str = "") -> NfQueueError:
        """The exception for an NLMSG_ERROR at ``offset``: what failed, the errno, the kernel's words, a fix."""
        what = what or self._describe_request(offset, length)
        detail = ""
        flags = _NLMSGHDR.unpack_from(self._buffer, offset)[2]
        if flags & NLM_F_ACK_TLVS:  # extended ack: the attributes follow the (possibly capped) request
            echoed = offset + _NLMSGHDR.size + _ERRNO.size
            request_length = _NLMSGHDR.size if flags & NLM_F_CAPPED else _NLMSGHDR.unpack_from(self._buffer, echoed)[0]
            attrs = echoed + ((request_length + 3) & ~3)
            while attrs + _NLATTR.size <= offset + length:
                attr_length, attr_kind = _NLATTR.unpack_from(self._buffer, attrs)
                if attr_length < _NLATTR.size:
                    break
                if attr_kind & NLA_TYPE_MASK == NLMSGERR_ATTR_MSG:
                    text = bytes(self._buffer[attrs + _NLATTR.size : attrs + attr_length]).rstrip(b"\0")
                    detail = f"; kernel says: {text.decode(errors='replace')}"
                attrs += (attr_length + 3) & ~3
        return NfQueueError(code, f"{what} failed: {_error_name(code)}{detail}{self._hint(code, what)}")

    def _hint(self, code: int, what: str) -> str:
        if code == errno_codes.EPERM and what.startswith("binding"):
            owner = queue_counters(self.queue_num)  # readable when called inside the queue's namespace
            if owner is not None and owner["peer_portid"] != self.portid:
                return (
                    f"; queue {self.queue_num} is already bound by netlink port {owner['peer_portid']} "
                    "(another process or socket) in this network namespace: close it or pick another number"
                )
            return (
                f"; either another socket has bound queue {self.queue_num} in this network namespace, "
                "or this process lacks CAP_NET_ADMIN there (run as root)"
            )
        if code == errno_codes.EBUSY and what.startswith("binding"):
            return f"; this socket has bound queue {self.queue_num} already"
        if code == errno_codes.ENOENT and "verdict" in what:
            return "; no such packet is waiting (was it given a verdict already?)"
        if code == errno_codes.EOPNOTSUPP and what.startswith("binding"):
            return "; this kernel lacks a requested queue feature (is nfnetlink_queue loaded?)"
        return ""

    # ------------------------------------------------------------ verdicts and requests

    def _message(self, message: int, body: bytes, flags: int, seq: int = 0) -> bytes:
        header = _NLMSGHDR.pack(_HEADER_LEN + len(body), (NFNL_SUBSYS_QUEUE << 8) | message, flags, seq, 0)
        return header + _NFGENMSG.pack(socket.AF_UNSPEC, 0, self.queue_num) + body

    def _queue(self, data: bytes) -> None:
        self._out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes >= _FLUSH_BYTES:
            self.flush()

    def verdict(self, packet_id: int, accept: bool, *, payload: bytes | None = None, mark: int | None = None) -> None:
        """Release (``accept``) or drop one packet, optionally with new bytes or a new mark. Buffered: see flush()."""
        body = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT if accept else NF_DROP, packet_id))
        if mark is not None:
            body += _attr(NFQA_MARK, _BE32.pack(mark))
        if payload is not None:
            body += _attr(NFQA_PAYLOAD, payload)
        self._queue(self._message(NFQNL_MSG_VERDICT, body, NLM_F_REQUEST))

    def verdict_batch(self, up_to_id: int, accept: bool) -> None:
        """One verdict for every waiting packet with id <= ``up_to_id`` (ids grow by one per packet)."""
        body = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT if accept else NF_DROP, up_to_id))
        self._queue(self._message(NFQNL_MSG_VERDICT_BATCH, body, NLM_F_REQUEST))

    def flush(self) -> None:
        """Send buffered verdicts in one datagram; the kernel applies them in the order they were given."""
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        self._out_bytes = 0
        while True:
            try:
                self._sock.send(data)
                return
            except BlockingIOError:  # netlink sends to the kernel do not block in practice; be safe
                select.select([], [self._sock], [], 1.0)

    def _request(self, message: int, body: bytes, what: str) -> None:
        """Send a configuration request and wait for its ACK, so a refusal raises here and names ``what``."""
        self.flush()
        seq = next(self._seq)
        self._sock.send(self._message(message, body, NLM_F_REQUEST | NLM_F_ACK, seq))
        deadline = time.monotonic() + 5.0
        packets: list[QueuedPacket] = []
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._poll.poll(remaining * 1000):
                    raise NfQueueError(errno_codes.ETIMEDOUT, f"{what} failed: no answer from the kernel in 5 s")
                try:
                    size = self._sock.recv_into(self._buffer, _RECV_BUFFER, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError as error:
                    if error.errno == errno_codes.ENOBUFS:
                        continue  # packets were lost, but the answer we wait for still comes
                    code = error.errno or errno_codes.EIO
                    raise NfQueueError(code, f"{what} failed: {_error_name(code)}") from None
                answered, refusal = self._parse(size, packets, seq, what)
                if refusal is not None:
                    raise refusal
                if answered:
                    return
        finally:
            self._pending.extend(packets)

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Send buffered verdicts, unbind and close. Packets still waiting are dropped by the kernel."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
            self._request(
                NFQNL_MSG_CONFIG,
                _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, 0)),
                f"unbinding NFQUEUE {self.queue_num}",
            )
        except OSError:
            pass  # closing the socket unbinds as well; there is nothing better to do here
        finally:
            self._sock.close()

    def __enter__(self) -> NfQueue:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def queue_counters(queue_num: int) -> dict[str, int] | None:
    """The kernel's counters for one queue in the calling thread's namespace; None if it is not bound.

    Read it from inside the namespace (``netns.run_in``). ``queue_dropped``: packets dropped because the
    queue was full (max_len); ``user_dropped``: lost because the socket buffer was full;
    ``id_sequence``: the last packet id handed out.
    """
    path = Path(COUNTERS_PATH)
    try:
        text = path.read_text()
    except FileNotFoundError:  # nfnetlink_queue not loaded, or no /proc/thread-self (pre-3.17)
        return None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 8 and int(fields[0]) == queue_num:
            names = (
                "queue_num",
                "peer_portid",
                "queue_total",
                "copy_mode",
                "copy_range",
                "queue_dropped",
                "user_dropped",
                "id_sequence",
            )
            return dict(zip(names, map(int, fields[:8]), strict=False))
    return None
