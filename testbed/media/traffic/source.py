"""The cross-traffic source: TCP bulk, constant-rate UDP or on/off UDP bursts, marked with a DSCP.

It prints ``ready``, then ``started`` once it sends, and a last ``done`` at ``--duration`` or on
SIGTERM/SIGINT; a failure is an ``error`` event (e.g. nobody accepted the TCP flows) and exit status 1.

Pacing follows an absolute schedule (errors never accumulate): sleep until ~100 us before a send, then
spin (at most a quarter of the gap, so small packets at high rates cost a little jitter, not a whole
core). A source more than 0.2 s behind (descheduled) skips the missed datagrams and reports them as
``skipped``. Payloads are zero-filled: the first byte 0x00 has RTP version 0, so packet taps looking
for RTP (version 2) skip cross traffic. A TCP source stops with a reset (SO_LINGER 0), so the data still
in its socket buffer does not keep loading the bottleneck after ``stop``.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import select
import selectors
import socket
import struct
import time

from testbed.errors import ExitCode
from testbed.media.traffic.rates import TCP_DEFAULT_MSS, TCP_HEADERS, next_send, udp_gap, udp_overhead
from testbed.proc import StopSignals, emit
from testbed.sockopts import big_buffer, family_of, mark_dscp

TCP_CHUNK = 256 * 1024  # one send() offers this much; the kernel takes what fits in the socket buffer
SPIN_SECONDS = 100e-6  # pacing sleeps until this close to a send time, then spins
MAX_LAG_SECONDS = 0.2  # a UDP source this far behind its schedule skips ahead instead of bursting


class Failed(Exception):
    """A failure the process reports as an error event (exit 1)."""


class _Stopped(Exception):
    """SIGTERM while a TCP source was still connecting: end with a (zero) report, not an error."""


class Source:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.kind: str = args.kind
        self.stop = StopSignals()
        self.family = family_of(args.to)
        self.sent_bytes = self.sent_packets = self.dropped = self.skipped = self.refused = 0
        self.started = self.ended = 0.0

    def run(self) -> ExitCode:
        emit("ready", kind=self.kind, to=self.args.to, port=self.args.port, flows=self.args.flows, pid=os.getpid())
        try:
            if self.kind == "tcp_bulk":
                self._tcp()
            else:
                self._udp()
        except Failed as failure:
            emit("error", message=str(failure))
            return ExitCode.FAILED
        self.report()
        return ExitCode.OK

    def report(self) -> None:
        seconds = max(0.0, self.ended - self.started)
        udp = self.kind != "tcp_bulk"
        wire = (
            self.sent_bytes + self.sent_packets * udp_overhead(self.args.to)
            if udp
            else self.sent_bytes * (TCP_DEFAULT_MSS + TCP_HEADERS) / TCP_DEFAULT_MSS
        )
        emit(
            "done",
            kind=self.kind,
            sent_bytes=self.sent_bytes,
            sent_packets=self.sent_packets if udp else None,
            seconds=round(seconds, 6),
            bps=self.sent_bytes * 8 / seconds if seconds else 0.0,
            wire_bps=wire * 8 / seconds if seconds else 0.0,
            dropped_local=self.dropped,
            skipped=self.skipped,
            refused=self.refused,
            cpu_seconds=round(time.process_time(), 3),
        )

    # UDP: one socket per flow (distinct source ports), datagrams round-robin over them

    def _udp(self) -> None:
        args = self.args
        socks = []
        for _ in range(args.flows):
            sock = socket.socket(self.family, socket.SOCK_DGRAM)
            mark_dscp(sock, args.dscp)
            big_buffer(sock, socket.SO_SNDBUF, 1 << 20)
            sock.connect((args.to, args.port))
            sock.setblocking(False)  # a full queue is a local drop, never a stall of the schedule
            socks.append(sock)
        payload = bytes(args.packet_size)  # zero-filled: never parsed as RTP (version 0)
        gap = udp_gap(args.rate, args.packet_size, udp_overhead(args.to))
        on, off = (args.on, args.off) if self.kind == "udp_onoff" else (None, None)
        emit("started", flows=len(socks), gap_us=round(gap * 1e6, 3))
        self.started = due = start = time.perf_counter()
        end = start + args.duration if args.duration else math.inf
        flow, sends = 0, [s.send for s in socks]
        clock, spin = time.perf_counter, min(SPIN_SECONDS, gap / 4)  # small gaps: late by a wakeup, not 100% CPU
        while not self.stop.requested and due < end:
            wait = due - clock()
            if wait > spin:
                self.stop.sleep(wait - spin)
                continue
            while clock() < due:
                pass
            try:
                sends[flow](payload)
                self.sent_packets += 1
                self.sent_bytes += args.packet_size
            except (BlockingIOError, InterruptedError):
                self.dropped += 1
            except OSError as error:
                if error.errno == errno.ENOBUFS:
                    self.dropped += 1
                elif error.errno == errno.ECONNREFUSED:  # ICMP port unreachable for an earlier datagram
                    self.refused += 1
                else:
                    raise Failed(f"sending to {args.to}:{args.port} failed: {error}") from error
            flow = (flow + 1) % len(sends)
            due = next_send(due, gap, start, on, off)
            behind = clock() - due
            if behind > MAX_LAG_SECONDS:  # descheduled for long: skip, keep the average from bursting
                missed = int(behind / gap)
                self.skipped += missed
                for _ in range(missed):
                    due = next_send(due, gap, start, on, off)
        self.ended = min(clock(), end)
        for sock in socks:
            sock.close()

    # TCP bulk: N connections, each offered a large zero buffer whenever it can take more

    def _connect(self, deadline: float) -> socket.socket:
        """One connection, retried until ``deadline``: the sink may start a little later (refused), the
        first SYN may wait for ARP or sit behind a full queue. Non-blocking, so SIGTERM ends the wait."""
        args = self.args
        problem = "no answer"
        while not self.stop.requested:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
            mark_dscp(sock, args.dscp)  # before connect: the SYN carries the mark too
            sock.setblocking(False)
            code = sock.connect_ex((args.to, args.port))
            if code == errno.EINPROGRESS:
                _, writable, _ = select.select([self.stop.reader], [sock], [], max(0.0, deadline - time.monotonic()))
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if writable else errno.ETIMEDOUT
            if code == 0:
                return sock
            sock.close()
            problem = os.strerror(code)
            if time.monotonic() >= deadline:
                break
            self.stop.sleep(0.1)
        if self.stop.requested:
            raise _Stopped
        raise Failed(
            f"could not connect to {args.to}:{args.port} within {args.connect_timeout:g} s "
            f"({problem}); is the sink running there?"
        )

    def _tcp(self) -> None:
        args = self.args
        deadline = time.monotonic() + args.connect_timeout
        socks: list[socket.socket] = []
        try:
            for _ in range(args.flows):
                socks.append(self._connect(deadline))
        except _Stopped:
            for sock in socks:
                sock.close()
            return
        except Failed:
            for sock in socks:
                sock.close()
            raise
        selector = selectors.DefaultSelector()
        selector.register(self.stop.reader, selectors.EVENT_READ, None)
        for sock in socks:
            sock.setblocking(False)
            # on stop, reset: the megabytes still in the socket buffer must not keep loading the link
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            selector.register(sock, selectors.EVENT_WRITE, sock)
        chunk = memoryview(bytes(TCP_CHUNK))
        emit("started", flows=len(socks))
        self.started = time.perf_counter()
        end = self.started + args.duration if args.duration else math.inf
        open_flows = len(socks)
        while not self.stop.requested and open_flows:
            remaining = end - time.perf_counter()
            if remaining <= 0:
                break
            for key, _ in selector.select(min(remaining, 1.0)):
                if key.data is None:
                    self.stop.drain()
                    continue
                try:
                    self.sent_bytes += key.data.send(chunk)
                except (BlockingIOError, InterruptedError):
                    pass
                except (ConnectionResetError, BrokenPipeError):  # the sink went away
                    selector.unregister(key.data)
                    open_flows -= 1
                    self.refused += 1
        self.ended = min(time.perf_counter(), end)
        for sock in socks:
            sock.close()
