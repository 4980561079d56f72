"""The cross-traffic sink: receives TCP flows or UDP datagrams and reports goodput per interval.

It prints ``ready`` (with its port and the wall-clock ``time`` its intervals count from), then an
``interval`` event every ``--report-every`` seconds (``t``: end of the interval, seconds since ready;
``packets`` is null for TCP), and a last ``done`` on SIGTERM/SIGINT, when all its TCP flows have closed,
or after ``--idle`` seconds without data. UDP arrival times are the kernel's receive timestamps, so a
sink that is descheduled for a moment still measures the link, not itself; the DSCP of every datagram
is counted.
"""

from __future__ import annotations

import math
import os
import selectors
import socket
import time
from typing import Any

from testbed.media.traffic.rates import TCP_DEFAULT_MSS, TCP_HEADERS, UDP_OVERHEAD_V4, UDP_OVERHEAD_V6
from testbed.proc import StopSignals, emit
from testbed.sockopts import big_buffer, family_of, receive_timestamps, receive_tos, timestamp_ns, tos_of


def _peer(address: tuple[Any, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Sink:
    def __init__(self, kind: str, port: int, flows: int, report_every: float, idle: float, bind: str):
        self.kind, self.flows, self.report_every, self.idle = kind, flows, report_every, idle
        self.stop = StopSignals()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.stop.reader, selectors.EVENT_READ, "stop")
        family = family_of(bind)
        self.overhead = UDP_OVERHEAD_V6 if family == socket.AF_INET6 else UDP_OVERHEAD_V4
        if kind == "udp":
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            big_buffer(self.sock, socket.SO_RCVBUF, 8 << 20)
            receive_tos(self.sock)
            receive_timestamps(self.sock)
        else:
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((bind, port))
        if kind == "tcp":
            self.sock.listen(flows)
        self.sock.setblocking(False)
        self.selector.register(self.sock, selectors.EVENT_READ, "listen" if kind == "tcp" else "udp")
        self.port = self.sock.getsockname()[1]
        self.buffer = bytearray(1 << 20)
        self.view = memoryview(self.buffer)
        self.flow_bytes: dict[str, int] = {}
        self.flow_packets: dict[str, int] = {}
        self.dscp: dict[int, int] = {}
        self.connections: dict[socket.socket, str] = {}
        self.accepted = 0
        self.mss = TCP_DEFAULT_MSS
        self.total_bytes = self.total_packets = 0
        self.first_bytes = 0  # bytes of the first arrival: rates count what came after it
        # first and last arrival: kernel receive timestamps (UDP; immune to this process being descheduled)
        # or the time recv returned (TCP)
        self.first: float | None = None
        self.last: float | None = None
        self.last_activity = 0.0

    def wire_bytes(self, payload: int, packets: int) -> float:
        if self.kind == "udp":
            return payload + packets * self.overhead
        return payload * (self.mss + TCP_HEADERS) / self.mss

    def _read_udp(self) -> None:
        self.last_activity = time.perf_counter()
        while True:
            try:
                size, ancillary, _, address = self.sock.recvmsg_into([self.view], 128)
            except (BlockingIOError, InterruptedError):
                return
            tos, arrived = -4, self.last_activity
            for level, kind, value in ancillary:
                stamp, seen = timestamp_ns(level, kind, value), tos_of(level, kind, value)
                if stamp is not None:
                    arrived = stamp / 1e9
                elif seen is not None:
                    tos = seen
            self.dscp[tos >> 2] = self.dscp.get(tos >> 2, 0) + 1
            peer = _peer(address)
            self.flow_bytes[peer] = self.flow_bytes.get(peer, 0) + size
            self.flow_packets[peer] = self.flow_packets.get(peer, 0) + 1
            self.total_bytes += size
            self.total_packets += 1
            if self.first is None:
                self.first, self.first_bytes = arrived, size
            self.last = arrived

    def _accept(self) -> None:
        try:
            connection, address = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        connection.setblocking(False)
        try:
            self.mss = connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) or self.mss
        except OSError:
            pass
        peer = _peer(address)
        self.connections[connection] = peer
        self.flow_bytes.setdefault(peer, 0)
        self.selector.register(connection, selectors.EVENT_READ, "flow")
        self.accepted += 1
        if self.accepted >= self.flows:  # no more: later connects are refused
            self.selector.unregister(self.sock)
            self.sock.close()

    def _read_tcp(self, connection: socket.socket) -> None:
        peer = self.connections[connection]
        now = time.perf_counter()
        while True:
            try:
                size = connection.recv_into(self.view)
            except (BlockingIOError, InterruptedError):
                return
            except (ConnectionResetError, TimeoutError):  # a source stops with a reset
                size = 0
            if size == 0:
                self.selector.unregister(connection)
                connection.close()
                del self.connections[connection]
                return
            self.flow_bytes[peer] += size
            self.total_bytes += size
            self.last_activity = now
            if self.first is None:
                self.first, self.first_bytes = now, size
            self.last = now

    def finished(self) -> bool:
        if self.stop.requested:
            return True
        if self.kind == "tcp" and self.accepted >= self.flows and not self.connections:
            return True
        return bool(self.idle and self.last is not None and time.perf_counter() - self.last_activity > self.idle)

    def run(self) -> None:
        start = time.perf_counter()
        emit("ready", kind=self.kind, port=self.port, time=time.time(), pid=os.getpid())
        tick = 1
        since = (start, 0, 0)  # the open interval: its start, bytes and packets before it
        while not self.finished():
            due = start + tick * self.report_every
            wake = due if not (self.idle and self.last is not None) else min(due, self.last_activity + self.idle)
            for key, _ in self.selector.select(max(0.0, wake - time.perf_counter()) + 1e-4):
                if key.data == "udp":
                    self._read_udp()
                elif key.data == "listen":
                    self._accept()
                elif key.data == "flow":
                    self._read_tcp(key.fileobj)  # type: ignore[arg-type]
                else:
                    self.stop.drain()
            now = time.perf_counter()
            if now >= due:
                since = self._interval(due - start, now, since)
                tick = max(tick + 1, math.floor((now - start) / self.report_every) + 1)
        now = time.perf_counter()
        if now - since[0] > 0.001 or self.total_bytes > since[1]:  # the last, partial interval
            self._interval(now - start, now, since)
        self.report()

    def _interval(self, t: float, now: float, since: tuple[float, int, int]) -> tuple[float, int, int]:
        seconds = now - since[0]
        got, packets = self.total_bytes - since[1], self.total_packets - since[2]
        emit(
            "interval",
            t=round(t, 6),
            seconds=round(seconds, 6),
            bytes=got,
            packets=packets if self.kind == "udp" else None,
            bps=got * 8 / seconds if seconds else 0.0,
            wire_bps=self.wire_bytes(got, packets) * 8 / seconds if seconds else 0.0,
        )
        return now, self.total_bytes, self.total_packets

    def report(self) -> None:
        seconds = (self.last - self.first) if self.first is not None and self.last is not None else 0.0
        after_first = self.total_bytes - self.first_bytes
        packets_after = max(0, self.total_packets - 1)
        udp = self.kind == "udp"
        emit(
            "done",
            kind=self.kind,
            bytes=self.total_bytes,
            packets=self.total_packets if udp else None,
            seconds=round(seconds, 6),
            bps=after_first * 8 / seconds if seconds else 0.0,
            wire_bps=self.wire_bytes(after_first, packets_after) * 8 / seconds if seconds else 0.0,
            per_flow=[
                {
                    "peer": peer,
                    "bytes": self.flow_bytes[peer],
                    "packets": self.flow_packets.get(peer, 0) if udp else None,
                }
                for peer in self.flow_bytes
            ],
            dscp={str(k): v for k, v in sorted(self.dscp.items())},
            mss=None if udp else self.mss,
            cpu_seconds=round(time.process_time(), 3),
        )
        for connection in list(self.connections):
            connection.close()
        self.sock.close()
