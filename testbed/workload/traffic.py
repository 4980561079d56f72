"""Cross traffic from the harness's side: the command lines of sinks and sources, and their reports.

The processes themselves (``testbed.media.traffic``) run inside nodes, started by the agents; what they
print (``testbed.proc`` events) comes back here as lines or as relayed events and becomes a
``SinkReport``/``SourceReport``, or a ``TrafficError`` with the process's own words.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from testbed.errors import TestbedError
from testbed.media.traffic.rates import KINDS, sink_kind
from testbed.proc import parse_events

if TYPE_CHECKING:
    from testbed.scenario.model import TrafficSpec

__all__ = [
    "FlowCount",
    "Interval",
    "SinkReport",
    "SourceReport",
    "TrafficError",
    "TrafficResult",
    "commands_for",
    "parse_events",
    "sink_command",
    "sink_kind",
    "sink_report",
    "source_command",
    "source_report",
]

MODULE = "testbed.media.traffic"
Lines = Iterable[str | Mapping[str, Any]]


class TrafficError(TestbedError):
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
    return [python, "-m", MODULE]


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


def _done(events: list[dict[str, Any]], who: str) -> dict[str, Any]:
    errors = [e["message"] for e in events if e.get("event") == "error"]
    if errors:
        raise TrafficError(f"traffic {who}: {errors[0]}")
    done = [e for e in events if e.get("event") == "done"]
    if not done:
        output = " | ".join(e["text"] for e in events if e.get("event") == "output")[-500:]
        raise TrafficError(f"traffic {who} ended without a report" + (f": {output}" if output else ""))
    return done[-1]


def sink_report(lines: Lines) -> SinkReport:
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


def source_report(lines: Lines) -> SourceReport:
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
