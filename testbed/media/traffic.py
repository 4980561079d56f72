"""Cross traffic: TCP bulk, constant-rate UDP and on/off UDP bursts, each marked with a DSCP.

Sources and sinks are separate processes started inside nodes (one GIL each, so a busy pacing loop never
delays a call agent). They speak JSON lines on stdout, one object per line with an ``event`` key:

* both print ``{"event": "ready", ...}`` first (the agent waits for it; a sink's carries its port and the
  wall-clock ``time`` its intervals count from); a source then prints ``started`` once it sends;
* the sink prints ``{"event": "interval", "t", "seconds", "bytes", "packets", "bps", "wire_bps"}`` every
  ``--report-every`` seconds (``t``: end of the interval, seconds since ready; ``packets`` is null for TCP);
* on SIGTERM/SIGINT or at the natural end (a source's ``--duration``; a TCP sink once all its flows have
  closed; a sink idle for ``--idle`` seconds) a last ``{"event": "done", ...}``, then exit 0;
* a failure is ``{"event": "error", "message": ...}`` and exit 1 (e.g. nobody accepted the TCP flows).
Whoever starts them must keep reading stdout (or send it to a file): a full pipe would stall the sink.

Rates. ``bps`` is payload goodput (bytes x 8 / seconds). ``wire_bps`` counts what a shaper on a veth
counts (HTB sees the Ethernet frame without FCS): UDP adds 42 bytes per datagram (UDP 8 + IPv4 20 +
Ethernet 14; 62 over IPv6); TCP is an estimate for full-size segments: 66 header bytes (Ethernet 14 +
IPv4 20 + TCP 20 + timestamps 12) per MSS of payload, so at MTU 1500 goodput is 1448/1514 = 95.6% of
the wire rate. A UDP source's ``rate`` is a wire rate, so a sink behind an unshaped link measures
``wire_bps == rate``; udp_onoff sends at ``rate`` during ``on`` and nothing during ``off``. Pacing
follows an absolute schedule (errors never accumulate): sleep until ~100 us before a send, then spin (at
most a quarter of the gap, so small packets at high rates cost a little jitter, not a whole core). A
source more than 0.2 s behind (descheduled) skips the missed datagrams and reports them as ``skipped``.

Payloads are zero-filled: the first byte 0x00 has RTP version 0, so packet taps looking for RTP
(version 2) skip cross traffic. A TCP source stops with a reset (SO_LINGER 0), so the data still in its
socket buffer does not keep loading the bottleneck after ``stop``.

``python -m testbed.media.traffic sink --kind tcp|udp --port P [--flows N] [--report-every S] [--idle S]``
``python -m testbed.media.traffic source --kind tcp_bulk|udp_cbr|udp_onoff --to ADDR --port P [--flows N]
[--rate BPS] [--packet-size B] [--dscp D] [--duration S] [--on S --off S] [--connect-timeout S]``
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import select
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the processes themselves import nothing heavy: they start in ~50 ms
    from testbed.scenario.model import TrafficSpec

KINDS = ("tcp_bulk", "udp_cbr", "udp_onoff")
UDP_OVERHEAD_V4 = 8 + 20 + 14  # UDP + IPv4 + Ethernet header, per datagram
UDP_OVERHEAD_V6 = 8 + 40 + 14
TCP_HEADERS = 14 + 20 + 20 + 12  # Ethernet + IPv4 + TCP + timestamp option, per full-size segment
TCP_DEFAULT_MSS = 1448
TCP_CHUNK = 256 * 1024  # one send() offers this much; the kernel takes what fits in the socket buffer
SPIN_SECONDS = 100e-6  # pacing sleeps until this close to a send time, then spins
MAX_LAG_SECONDS = 0.2  # a UDP source this far behind its schedule skips ahead instead of bursting
IP_RECVTOS = 13
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("@qq")


# ================================================================ the API for the harness


class TrafficError(RuntimeError):
    """A traffic process reported an error (or printed no ``done``); the message is its own."""


@dataclass(frozen=True)
class Interval:
    """What the sink received in one reporting interval."""

    t: float  # end of the interval, seconds since the sink was ready
    seconds: float  # its measured length
    bytes: int
    packets: int | None  # datagrams (UDP); None for TCP, whose segments a socket cannot see
    bps: float
    wire_bps: float

    @property
    def active(self) -> bool:
        return self.bytes > 0


@dataclass(frozen=True)
class FlowCount:
    peer: str  # "address:port" of the sending socket
    bytes: int
    packets: int | None


@dataclass(frozen=True)
class SinkReport:
    """The sink's view: what arrived, per interval and per flow, with the DSCP it carried (UDP)."""

    kind: str
    bytes: int
    packets: int | None
    seconds: float  # first to last arrival
    bps: float
    wire_bps: float
    per_flow: list[FlowCount]
    dscp: dict[int, int]  # DSCP -> datagrams (UDP only; empty for TCP)
    intervals: list[Interval]
    ready_time: float  # wall clock (time.time()) when the sink was ready; interval t counts from here
    cpu_seconds: float


@dataclass(frozen=True)
class SourceReport:
    """The source's view: what it handed to the kernel, and what it could not. For TCP that includes what
    still sat in socket buffers when the flows were reset, so only the sink's numbers measure the link."""

    kind: str
    sent_bytes: int
    sent_packets: int | None  # datagrams (UDP); None for TCP
    seconds: float
    bps: float
    wire_bps: float
    dropped_local: int  # UDP datagrams the local stack refused (ENOBUFS/EAGAIN)
    skipped: int  # UDP datagrams never sent because the process fell > MAX_LAG_SECONDS behind
    refused: int  # UDP: ICMP port unreachable seen (no sink); TCP: flows the peer closed or reset
    cpu_seconds: float


@dataclass(frozen=True)
class TrafficResult:
    """One cross-traffic flow group of a run, as the report shows it."""

    name: str
    kind: str
    sent_bytes: int
    received_bytes: int
    seconds: float
    bps: float  # goodput at the sink
    wire_bps: float
    dropped_local: int = 0
    dscp: dict[int, int] = field(default_factory=dict)
    intervals: list[Interval] = field(default_factory=list)

    @classmethod
    def from_reports(cls, name: str, source: SourceReport, sink: SinkReport) -> TrafficResult:
        return cls(
            name,
            source.kind,
            source.sent_bytes,
            sink.bytes,
            sink.seconds,
            sink.bps,
            sink.wire_bps,
            source.dropped_local,
            dict(sink.dscp),
            list(sink.intervals),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["dscp"] = {str(k): v for k, v in self.dscp.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrafficResult:
        values = dict(data)
        values["dscp"] = {int(k): v for k, v in data.get("dscp", {}).items()}
        values["intervals"] = [Interval(**i) for i in data.get("intervals", [])]
        return cls(**values)


def _module(python: str) -> list[str]:
    return [python, "-m", "testbed.media.traffic"]


def sink_kind(kind: str) -> str:
    """The sink's protocol for a source kind: tcp_bulk -> tcp, udp_* -> udp."""
    return "tcp" if kind == "tcp_bulk" else "udp"


def sink_command(
    kind: str,
    port: int,
    *,
    flows: int = 1,
    report_every: float = 1.0,
    idle: float = 0.0,
    bind: str | None = None,
    python: str = sys.executable,
) -> list[str]:
    """argv of a sink for the traffic ``kind`` (a source kind or tcp/udp); port 0: the kernel picks one.
    ``bind``: listen address (default 0.0.0.0; "::" for IPv6 sources)."""
    argv = [
        *_module(python),
        "sink",
        "--kind",
        kind if kind in ("tcp", "udp") else sink_kind(kind),
        "--port",
        str(port),
        "--flows",
        str(flows),
        "--report-every",
        repr(float(report_every)),
    ]
    if idle:
        argv += ["--idle", repr(float(idle))]
    if bind:
        argv += ["--bind", bind]
    return argv


def source_command(
    kind: str,
    address: str,
    port: int,
    *,
    flows: int = 1,
    rate: float | None = None,
    packet_size: int = 1200,
    dscp: int = 0,
    duration: float | None = None,
    on: float | None = None,
    off: float | None = None,
    connect_timeout: float = 5.0,
    python: str = sys.executable,
) -> list[str]:
    """argv of a source; without ``duration`` it runs until SIGTERM. ``rate`` is a wire rate (UDP)."""
    if kind not in KINDS:
        raise ValueError(f"traffic kind {kind!r}: use one of {', '.join(KINDS)}")
    argv = [
        *_module(python),
        "source",
        "--kind",
        kind,
        "--to",
        address,
        "--port",
        str(port),
        "--flows",
        str(flows),
        "--dscp",
        str(dscp),
    ]
    if kind != "tcp_bulk":
        if rate is None:
            raise ValueError(f"{kind} needs a rate")
        argv += ["--rate", repr(float(rate)), "--packet-size", str(packet_size)]
    if kind == "udp_onoff":
        if on is None or off is None:
            raise ValueError("udp_onoff needs on and off")
        argv += ["--on", repr(float(on)), "--off", repr(float(off))]
    if duration is not None:
        argv += ["--duration", repr(float(duration))]
    if kind == "tcp_bulk":
        argv += ["--connect-timeout", repr(float(connect_timeout))]
    return argv


def commands_for(
    spec: TrafficSpec, address: str, port: int, *, report_every: float = 1.0, python: str = sys.executable
) -> tuple[list[str], list[str]]:
    """(sink argv, source argv) for a scenario's traffic entry; the source runs from start to stop."""
    duration = None if spec.stop is None else spec.stop - spec.start
    sink = sink_command(spec.kind, port, flows=spec.flows, report_every=report_every, python=python)
    source = source_command(
        spec.kind,
        address,
        port,
        flows=spec.flows,
        rate=spec.rate,
        packet_size=spec.packet_size,
        dscp=spec.dscp,
        duration=duration,
        on=spec.on,
        off=spec.off,
        python=python,
    )
    return sink, source


def parse_events(lines: Iterable[str | dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON lines (or already decoded objects, as the agent relays them) -> events; other text is kept
    as ``{"event": "output"}`` so a traceback on stderr shows up in the error message."""
    events = []
    for line in lines:
        if isinstance(line, dict):
            events.append(line)
            continue
        text = line.strip()
        if not text:
            continue
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            event = None
        events.append(event if isinstance(event, dict) and "event" in event else {"event": "output", "text": text})
    return events


def _done(events: list[dict[str, Any]], who: str) -> dict[str, Any]:
    errors = [e["message"] for e in events if e.get("event") == "error"]
    if errors:
        raise TrafficError(f"traffic {who}: {errors[0]}")
    done = [e for e in events if e.get("event") == "done"]
    if not done:
        output = " | ".join(e["text"] for e in events if e.get("event") == "output")[-500:]
        raise TrafficError(f"traffic {who} ended without a report" + (f": {output}" if output else ""))
    return done[-1]


def sink_report(lines: Iterable[str | dict[str, Any]]) -> SinkReport:
    """The sink's output -> its report; raises TrafficError if it failed or never finished."""
    events = parse_events(lines)
    done = _done(events, "sink")
    ready = next((e for e in events if e.get("event") == "ready"), {})
    intervals = [
        Interval(e["t"], e["seconds"], e["bytes"], e.get("packets"), e["bps"], e["wire_bps"])
        for e in events
        if e.get("event") == "interval"
    ]
    return SinkReport(
        done["kind"],
        done["bytes"],
        done.get("packets"),
        done["seconds"],
        done["bps"],
        done["wire_bps"],
        [FlowCount(**f) for f in done.get("per_flow", [])],
        {int(k): v for k, v in done.get("dscp", {}).items()},
        intervals,
        ready.get("time", 0.0),
        done.get("cpu_seconds", 0.0),
    )


def source_report(lines: Iterable[str | dict[str, Any]]) -> SourceReport:
    """The source's output -> its report; raises TrafficError if it failed or never finished."""
    done = _done(parse_events(lines), "source")
    return SourceReport(
        done["kind"],
        done["sent_bytes"],
        done.get("sent_packets"),
        done["seconds"],
        done["bps"],
        done["wire_bps"],
        done.get("dropped_local", 0),
        done.get("skipped", 0),
        done.get("refused", 0),
        done.get("cpu_seconds", 0.0),
    )


def udp_overhead(address: str) -> int:
    return UDP_OVERHEAD_V6 if ":" in address else UDP_OVERHEAD_V4


def udp_gap(rate_bps: float, packet_size: int, overhead: int = UDP_OVERHEAD_V4) -> float:
    """Seconds between datagrams so that payload + headers make ``rate_bps`` on the wire."""
    return (packet_size + overhead) * 8 / rate_bps


def next_send(due: float, gap: float, start: float, on: float | None = None, off: float | None = None) -> float:
    """The send time after ``due``: one gap later, or, for on/off, the start of the next burst when that
    falls into a pause. Bursts start at ``start + k * (on + off)``; the schedule is absolute, so pacing
    errors never accumulate."""
    following = due + gap
    if on is None or off is None or off <= 0:
        return following
    period = on + off
    cycle = math.floor((following - start) / period)
    if following - start - cycle * period >= on:
        return start + (cycle + 1) * period
    return following


# ================================================================ the processes


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class Stop:
    """SIGTERM/SIGINT set a flag and wake any wait at once (a socket pair as the signal wakeup fd;
    without it Python would resume an interrupted select until its timeout)."""

    def __init__(self) -> None:
        self.requested = False
        self.reader, writer = socket.socketpair()
        self._writer = writer
        for end in (self.reader, writer):
            end.setblocking(False)
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def drain(self) -> None:
        try:
            while self.reader.recv(256):
                pass
        except BlockingIOError:
            pass

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (microsecond resolution, unlike epoll) or until a stop signal."""
        if seconds > 0 and not self.requested:
            select.select([self.reader], [], [], seconds)


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _mark(sock: socket.socket, dscp: int) -> None:
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, dscp << 2)


def _peer(address: tuple) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _big_buffer(sock: socket.socket, option: int, size: int) -> None:
    """Root may exceed net.core.[rw]mem_max (the *FORCE options); others get what the sysctl allows."""
    force = {socket.SO_RCVBUF: 33, socket.SO_SNDBUF: 32}[option]  # SO_RCVBUFFORCE, SO_SNDBUFFORCE
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, option, size)


# ---------------------------------------------------------------- sink


class Sink:
    def __init__(self, kind: str, port: int, flows: int, report_every: float, idle: float, bind: str):
        self.kind, self.flows, self.report_every, self.idle = kind, flows, report_every, idle
        self.stop = Stop()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.stop.reader, selectors.EVENT_READ, "stop")
        family = _family(bind)
        self.overhead = UDP_OVERHEAD_V6 if family == socket.AF_INET6 else UDP_OVERHEAD_V4
        if kind == "udp":
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            _big_buffer(self.sock, socket.SO_RCVBUF, 8 << 20)
            if family == socket.AF_INET6:
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
            else:
                self.sock.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
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
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanoseconds = TIMESPEC.unpack_from(value)
                    arrived = seconds + nanoseconds * 1e-9
                elif (level, kind) in ((socket.IPPROTO_IP, socket.IP_TOS), (socket.IPPROTO_IPV6, socket.IPV6_TCLASS)):
                    tos = value[0] if len(value) == 1 else int.from_bytes(value[:4], sys.byteorder)
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


# ---------------------------------------------------------------- sources


class Failed(Exception):
    """A failure the process reports as an error event (exit 1)."""


class _Stopped(Exception):
    """SIGTERM while a TCP source was still connecting: end with a (zero) report, not an error."""


class Source:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.kind: str = args.kind
        self.stop = Stop()
        self.family = _family(args.to)
        self.sent_bytes = self.sent_packets = self.dropped = self.skipped = self.refused = 0
        self.started = self.ended = 0.0

    def run(self) -> int:
        emit("ready", kind=self.kind, to=self.args.to, port=self.args.port, flows=self.args.flows, pid=os.getpid())
        try:
            if self.kind == "tcp_bulk":
                self._tcp()
            else:
                self._udp()
        except Failed as failure:
            emit("error", message=str(failure))
            return 1
        self.report()
        return 0

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
            _mark(sock, args.dscp)
            _big_buffer(sock, socket.SO_SNDBUF, 1 << 20)
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
            _mark(sock, args.dscp)  # before connect: the SYN carries the mark too
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


# ---------------------------------------------------------------- command line


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {text} is outside 0..65535")
    return value


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m testbed.media.traffic", description=__doc__.split("\n")[0])
    roles = main.add_subparsers(dest="role", required=True)
    sink = roles.add_parser("sink", help="receive and report goodput per interval")
    sink.add_argument("--kind", choices=("tcp", "udp"), required=True)
    sink.add_argument("--port", type=_port, required=True, help="0: the kernel picks (reported in 'ready')")
    sink.add_argument("--flows", type=int, default=1, help="TCP: connections to accept, then end when all close")
    sink.add_argument("--report-every", type=_positive, default=1.0, metavar="SECONDS")
    sink.add_argument(
        "--idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="end this long after the last arrival (0: only on SIGTERM or when TCP flows close)",
    )
    sink.add_argument("--bind", default="0.0.0.0", help="address to listen on (:: for IPv6)")
    source = roles.add_parser("source", help="send cross traffic")
    source.add_argument("--kind", choices=KINDS, required=True)
    source.add_argument("--to", required=True, metavar="ADDR")
    source.add_argument("--port", type=_port, required=True)
    source.add_argument("--flows", type=int, default=1)
    source.add_argument("--rate", type=_positive, help="UDP: bits/s on the wire (payload + 42 bytes a datagram)")
    source.add_argument("--packet-size", type=int, default=1200, help="UDP payload bytes")
    source.add_argument("--dscp", type=int, default=0)
    source.add_argument("--duration", type=_positive, help="seconds; default: until SIGTERM")
    source.add_argument("--on", type=_positive, help="udp_onoff: burst seconds")
    source.add_argument("--off", type=_positive, help="udp_onoff: pause seconds")
    source.add_argument(
        "--connect-timeout", type=_positive, default=5.0, help="tcp_bulk: keep retrying refused connects this long"
    )
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.role == "sink":
            if not 1 <= args.flows <= 64:
                raise Failed(f"--flows {args.flows}: use 1..64")
            Sink(args.kind, args.port, args.flows, args.report_every, args.idle, args.bind).run()
            return 0
        if not 1 <= args.flows <= 64 or not 0 <= args.dscp <= 63:
            raise Failed(f"--flows {args.flows} / --dscp {args.dscp}: use flows 1..64, dscp 0..63")
        if args.kind != "tcp_bulk" and args.rate is None:
            raise Failed(f"{args.kind} needs --rate")
        if args.kind == "udp_onoff" and (args.on is None or args.off is None):
            raise Failed("udp_onoff needs --on and --off")
        return Source(args).run()
    except Failed as failure:
        emit("error", message=str(failure))
        return 1
    except OSError as error:  # e.g. the port is taken, or the address is not in this node
        emit("error", message=f"{args.role}: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
