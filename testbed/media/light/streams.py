"""The light endpoint's engine: every RTP stream of one node in one thread, sent in batches.

One raw IPv4 socket sends all the node's streams (``sendmmsg`` over one preallocated datagram buffer
per stream, headers written with numpy for the whole batch), so the cost per packet is a share of one
system call, not a Python call. Each stream keeps its own UDP socket, bound to a port from the node's
``ip_local_port_range`` (10000-60000): it owns the port (no ICMP unreachable, the 5-tuple a NAT maps),
receives the peer's RTP and RTCP, and sends this side's RTCP (rtcp-mux, as WebRTC does).

Timing: each stream has a random phase on a 1 ms grid within the 20 ms period, so the node's
packets spread over 20 instants instead of one burst; the thread wakes at the next instant with
packets due and records, per packet, when it really went (``send_ns``); lateness is that minus the
instant it was due. A stream that fell behind sends what is due at once (the clock is absolute).

Receiving needs no decoder: the taps are the record of what arrived. Each socket is drained in
batches (``recvmmsg``, 32 at a time) every ``DRAIN_NS`` (spread over the ticks, and on demand), which keeps the
counts, the RFC 3550 jitter and extended sequence for receiver reports, the last arrival (the
harness's drain waits on it) and, for a callee, the address the caller's packets come from:
the callee sends nothing until its first packet arrives and then answers that address and port
(symmetric RTP, as media servers do behind NAT).
"""

from __future__ import annotations

import os
import random
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from testbed.media.light.legs import Clip, LightLeg, RowArrays
from testbed.media.light.mmsg import Receiver, Sender
from testbed.media.light.packets import HEADERS, header_template, rtcp_report, write_packets
from testbed.media.records import pacing_summary
from testbed.sockopts import SO_TIMESTAMPNS

__all__ = ["FRAME_NS", "Clip", "LightLeg", "StreamEngine", "route_source"]

FRAME_NS = 20_000_000
SLOT_NS = 1_000_000  # phases lie on this grid: 20 sending instants per 20 ms
LEAD_NS = 1_000_000  # a new stream's first packet is at least this far ahead
DRAIN_NS = 500_000_000  # every stream's socket is read this often (25 packets: well inside its buffer)
RTCP_NS = 1_000_000_000
IDLE_NS = 5_000_000  # the longest the thread sleeps (new streams, stops, reports)
WIDTH = 512  # one datagram buffer: 40 header bytes + the longest payload + the SRTP tag


def route_source(destination: str, port: int) -> str:
    """The local address the kernel sends from towards ``destination``."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((destination, port or 9))
        return str(probe.getsockname()[0])
    finally:
        probe.close()


def _share_realtime() -> bool:
    """Give the sending thread the process's real-time class (the agent takes one, or the harness sets it
    from the host): a new thread does not keep it, because the class is taken with SCHED_RESET_ON_FORK,
    which the kernel applies to every task a real-time one creates, threads too."""
    policy = os.sched_getscheduler(os.getpid()) & ~os.SCHED_RESET_ON_FORK
    if policy not in (os.SCHED_FIFO, os.SCHED_RR):
        return False
    try:
        os.sched_setscheduler(0, policy | os.SCHED_RESET_ON_FORK, os.sched_getparam(os.getpid()))
    except OSError:
        return False
    return True


class StreamEngine:
    """Every light stream of one node; ``start`` runs the sending thread."""

    def __init__(self, emit_connected: Callable[[LightLeg], None], capacity: int = 64, frames: int = 1024):
        self.emit_connected = emit_connected
        self.lock = threading.Lock()
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.receiver = Receiver(32, WIDTH)
        self.legs: dict[int, LightLeg] = {}  # by row
        self.draining: list[LightLeg] = []  # round-robin order of the sockets to read
        # legs with no peer yet (a callee before the caller's first packet): polled on every tick, so the
        # callee answers at once, but with one epoll call: hundreds of legs waiting for a slow harness to
        # accept their calls must not cost a system call each per millisecond
        self.waiting = select.epoll()
        self.by_fd: dict[int, LightLeg] = {}
        self._drain_next = 0
        self._drain_credit = 0.0
        self.lateness: list[npt.NDArray[np.float32]] = []  # ms, per hung-up leg
        self.sent = self.refused = 0
        self.batches = 0
        self.payloads = np.zeros((0, 1), np.uint8)
        self.payload_lengths = np.zeros(0, np.int64)
        self._clip_rows: dict[Clip, int] = {}  # each clip's first row, by identity
        self.sender: Sender
        self.table: RowArrays
        self._resize(capacity, frames)
        self._running = False
        self._thread: threading.Thread | None = None
        self.realtime = False
        self.cpu_ns = {"send": 0, "receive": 0, "reports": 0}  # the thread's CPU time (user + system) per job

    # ------------------------------------------------------------ storage

    def _resize(self, rows: int, frames: int) -> None:
        """(Re)allocate the datagram buffers and the per-row arrays, keeping what is there."""
        old = getattr(self, "sender", None)
        sender = Sender(self.raw.fileno(), rows, WIDTH)
        table = RowArrays.allocate(rows, frames)
        if old is not None:
            sender.data[: old.rows] = old.data
            sender.names[: old.rows] = old.names
            table.keep(self.table)
        self.sender, self.table = sender, table

    def _add_clip(self, clip: Clip) -> int:
        """The clip's first row in the engine's payload table (one table for every stream's clip)."""
        if clip in self._clip_rows:
            return self._clip_rows[clip]
        table = self.payloads
        width = max(table.shape[1], clip.rows.shape[1])
        merged = np.zeros((len(table) + len(clip.rows), width), np.uint8)
        merged[: len(table), : table.shape[1]] = table
        merged[len(table) :, : clip.rows.shape[1]] = clip.rows
        self._clip_rows[clip] = start = len(table)
        self.payloads, self.payload_lengths = merged, np.concatenate([self.payload_lengths, clip.lengths])
        return start

    # ------------------------------------------------------------ legs (called from the event loop)

    def add(self, call: str, clip: Clip, codec: tuple[int, int, int], dscp: int, offset: int) -> LightLeg:
        """A new leg with its own UDP socket (a port from the node's range) and random SSRC, phase,
        first sequence number and timestamp."""
        pt, clock, ticks = codec
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, dscp << 2)
        sock.bind(("0.0.0.0", 0))
        sock.setblocking(False)
        chooser = random.SystemRandom()
        with self.lock:
            row = max(self.legs, default=-1) + 1
            while row in self.legs:
                row += 1
            if row >= self.sender.rows:
                self._resize(max(2 * self.sender.rows, row + 1), self.table.send_ns.shape[1])
            if clip.rows.shape[1] + HEADERS > WIDTH:
                raise ValueError(f"a payload of {clip.rows.shape[1]} bytes does not fit the {WIDTH}-byte buffer")
            leg = LightLeg(
                call=call, row=row, sock=sock, port=sock.getsockname()[1], ssrc=chooser.getrandbits(32), dscp=dscp,
                pt=pt, ticks=ticks, clock=clock, clip=clip, offset=offset % len(clip.rows),
                seq0=chooser.getrandbits(16), ts0=chooser.getrandbits(32), cname=f"{call}@light".encode()[:255],
            )  # fmt: skip
            self.table.base[row] = self._add_clip(clip)
            self.table.frames[row] = len(clip.rows)
            self.table.offset[row], self.table.seq0[row], self.table.ts0[row], self.table.ticks[row] = (
                leg.offset,
                leg.seq0,
                leg.ts0,
                ticks,
            )
            self.table.count[row], self.table.octets[row], self.table.active[row] = 0, 0, False
            self.legs[row] = leg
            self.draining.append(leg)
            self.by_fd[sock.fileno()] = leg
            self.waiting.register(sock.fileno(), select.EPOLLIN)
        return leg

    def connect(self, leg: LightLeg, peer: tuple[str, int]) -> None:
        """Send to ``peer`` from the next instant of the leg's phase on."""
        with self.lock:
            self._start(leg, peer)

    def _start(self, leg: LightLeg, peer: tuple[str, int]) -> None:
        if leg.peer is None:
            self.waiting.unregister(leg.sock.fileno())
        leg.peer = peer
        source = route_source(*peer)
        template = header_template(source, peer[0], leg.port, peer[1], leg.dscp, leg.pt, leg.ssrc)
        self.sender.data[leg.row, :HEADERS] = np.frombuffer(template, np.uint8)
        self.sender.set_destination(leg.row, peer[0])
        phase = random.randrange(FRAME_NS // SLOT_NS) * SLOT_NS
        now = time.time_ns()
        origin = now + LEAD_NS - (now + LEAD_NS) % FRAME_NS + phase
        if origin < now + LEAD_NS:
            origin += FRAME_NS
        leg.origin_ns = origin
        self.table.next_due[leg.row] = origin
        self.table.next_rtcp[leg.row] = origin + RTCP_NS
        self.table.active[leg.row] = True
        leg.connected_at = time.time()
        self.emit_connected(leg)

    def last_arrival_ns(self, leg: LightLeg) -> int:
        """When the leg's last RTP packet arrived, its socket read now (the harness's drain asks)."""
        with self.lock:
            self._drain(leg)
        return leg.last_arrival_ns

    def stop_media(self, leg: LightLeg) -> float:
        with self.lock:
            self.table.active[leg.row] = False
            if leg.stopped_at is None:
                leg.stopped_at = time.time()
        return leg.stopped_at

    def remove(self, leg: LightLeg) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Take the leg out (its socket closed after one last read); its packets' send times and how late
        each went (ms)."""
        with self.lock:
            self.table.active[leg.row] = False
            self.table.next_rtcp[leg.row] = np.iinfo(np.int64).max
            self._drain(leg)
            self.draining.remove(leg)
            if leg.peer is None:
                self.waiting.unregister(leg.sock.fileno())
            del self.by_fd[leg.sock.fileno()]
            del self.legs[leg.row]
            sent = self.table.send_ns[leg.row, : self.table.count[leg.row]].copy()
        leg.sock.close()
        due = leg.origin_ns + np.arange(sent.size, dtype=np.int64) * FRAME_NS
        lateness = ((sent - due) / 1e6).astype(np.float32)
        if sent.size:
            self.lateness.append(lateness)
        return sent, lateness

    # ------------------------------------------------------------ the thread

    def start(self) -> None:
        if self._thread is None:
            self._running = True
            self._thread = threading.Thread(target=self._run, name="light-streams", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(2)
        for leg in list(self.legs.values()):
            leg.sock.close()
        self.waiting.close()
        self.raw.close()

    def _run(self) -> None:
        self.realtime = _share_realtime()
        last = time.time_ns()
        spent = self.cpu_ns
        mark = time.thread_time_ns()
        while self._running:
            with self.lock:
                now = time.time_ns()
                self._send_due(now)
                sent = time.thread_time_ns()
                self._read_some(now - last)
                read = time.thread_time_ns()
                self._send_reports(now)
                spent["send"] += sent - mark
                spent["receive"] += read - sent
                spent["reports"] += time.thread_time_ns() - read
                active = self.table.next_due[self.table.active]
                wake = int(active.min()) if active.size else now + IDLE_NS
            last = now
            pause = min(wake, now + IDLE_NS) - time.time_ns()
            if pause > 0:
                time.sleep(pause / 1e9)
            mark = time.thread_time_ns()

    def _send_due(self, now: int) -> None:
        rows = np.flatnonzero(self.table.active & (self.table.next_due <= now))
        if rows.size == 0:
            return
        self.batches += 1
        k = self.table.count[rows]
        if int(k.max()) >= self.table.send_ns.shape[1]:
            self._resize(self.sender.rows, 2 * self.table.send_ns.shape[1])
        frame = self.table.base[rows] + (self.table.offset[rows] + k) % self.table.frames[rows]
        lengths = write_packets(
            self.sender.data, rows, self.payloads[frame], self.payload_lengths[frame],
            self.table.seq0[rows] + k, (self.table.ts0[rows] + k * self.table.ticks[rows]) & 0xFFFFFFFF,
        )  # fmt: skip
        sent_at = time.time_ns()
        sent, refused = self.sender.send(rows, lengths)
        self.sent += sent
        self.refused += refused
        self.table.send_ns[rows, k] = sent_at
        self.table.count[rows] = k + 1
        self.table.next_due[rows] += FRAME_NS
        self.table.octets[rows] += self.payload_lengths[frame]
        for row in rows[k == 0]:
            self.legs[int(row)].started_ns = sent_at

    def _read_some(self, elapsed_ns: int) -> None:
        """Read a share of the sockets (all of them once per ``DRAIN_NS``), and every socket still
        waiting for its first packet (a callee about to latch)."""
        for fd, _ in self.waiting.poll(0):  # one system call, however many legs wait
            self._drain(self.by_fd[fd])
        if not self.draining:
            return
        self._drain_credit += len(self.draining) * elapsed_ns / DRAIN_NS
        while self._drain_credit >= 1:
            self._drain_credit -= 1
            self._drain_next %= len(self.draining)
            self._drain(self.draining[self._drain_next])
            self._drain_next += 1
        self._drain_credit = min(self._drain_credit, float(len(self.draining)))

    def _drain(self, leg: LightLeg) -> None:
        """Read what waits in the leg's socket: RTP into its receive statistics, an SR's time for the
        next report's LSR/DLSR. A batch is some 25 packets, where a plain loop over ``struct`` reads
        costs less than numpy's per-call overhead."""
        receiver = self.receiver
        while True:
            count = receiver.receive(leg.sock.fileno())
            if count == 0:
                return
            seqs, stamps, arrivals = [], [], []
            for index, (length, first, kind, seq, stamp, ssrc, arrival) in enumerate(receiver.headers(count)):
                if 200 <= kind <= 204 and length >= 8:
                    leg.rtcp_received += 1
                    if kind == 200 and length >= 28:
                        leg.lsr, leg.lsr_at_ns = receiver.sr_middle(index), arrival
                elif length >= 12 and first & 0xC0 == 0x80:
                    seqs.append(seq)
                    stamps.append(stamp)
                    arrivals.append(arrival)
                    if leg.remote_ssrc is None:
                        leg.remote_ssrc = ssrc
                        if leg.peer is None:
                            self._start(leg, receiver.source(index))
            if seqs:
                leg.note_rtp(seqs, stamps, arrivals)
                leg.received += len(seqs)
                leg.last_arrival_ns = max(leg.last_arrival_ns, max(arrivals))
            if count < receiver.batch:
                return

    def _send_reports(self, now: int) -> None:
        for row in np.flatnonzero(self.table.next_rtcp <= now):
            leg = self.legs[int(row)]
            self.table.next_rtcp[row] += RTCP_NS
            if leg.peer is None:
                continue
            k = int(self.table.count[row])
            sender = None
            if self.table.active[row] and k:
                elapsed_ticks = (now - leg.origin_ns) * leg.clock // 1_000_000_000
                sender = ((leg.ts0 + elapsed_ticks) & 0xFFFFFFFF, k, int(self.table.octets[row]))
            packet = rtcp_report(leg.ssrc, leg.cname, now, sender, leg.report_block(now))
            try:
                leg.sock.sendto(packet, leg.peer)
                leg.rtcp_sent += 1
            except OSError:
                pass

    # ------------------------------------------------------------ figures

    def stats(self) -> dict[str, Any]:
        every = np.concatenate(self.lateness) if self.lateness else np.zeros(0, np.float32)
        return {
            "streams_open": len(self.legs),
            "realtime": self.realtime,
            "datagrams_sent": self.sent,
            "datagrams_refused": self.refused,
            "send_batches": self.batches,
            "mean_batch": round(self.sent / self.batches, 2) if self.batches else 0.0,
            "pacing": pacing_summary(every),
            "cpu_s": {job: round(ns / 1e9, 3) for job, ns in self.cpu_ns.items()},
        }
