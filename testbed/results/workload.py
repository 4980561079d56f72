"""``workload.json``: what one variant's workload did (calls, traffic, timeline, taps, queues), as the
harness saw it. Scoring reads this and the packet files it names; nothing here needs the lab."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from testbed.results.base import Record, ResultFile

WORKLOAD_FILE = "workload.json"


class LegSummary(Record):
    """One side of one call as its endpoint reported it at hang-up: the files scoring reads, and counts."""

    call: str
    endpoint: str = "aiortc"
    codec: str
    dscp: int
    clip: str
    sent_ssrc: int | None = None
    clip_started: float | None = Field(None, description="epoch seconds of the first packet: the clip's origin")
    frames_sent: int = 0
    clip_frames: int = 0
    clip_offset_frames: int = Field(0, description="the clip frame this side started sending at (count: N groups)")
    opus: list[Any] = Field(
        default_factory=list, description="the Opus encoding it sent: [bitrate, in-band FEC, expected loss] (aiortc)"
    )
    packets_received: int = 0
    packets_sent: int = 0
    connected_at: float | None = None
    setup_s: float | None = None
    media_stopped_at: float | None = Field(None, description="epoch seconds when this side stopped sending")
    hung_up_at: float | None = Field(
        None, description="epoch seconds when this side hung up: what had not arrived by then is in flight"
    )
    sockets_marked: int = 0
    candidate_pair: dict[str, str | None] = Field(
        default_factory=dict,
        description="the ICE pair the media took: local_type, remote_type (host | srflx | prflx | relay), "
        "protocol, relay_protocol (udp | tcp | tls: how this side reached its TURN server)",
    )
    timings: dict[str, float] = Field(
        default_factory=dict,
        description="seconds: gather_s (candidates gathered, TURN allocation included), ice_s (created to ICE "
        "connected), dtls_s (ICE connected to DTLS done), signalling_s (offer/answer carried through the lab)",
    )
    relay_tcp: dict[str, int] = Field(
        default_factory=dict,
        description="this side's TCP connection to its TURN server (TCP or TLS relay): segments sent, "
        "retransmitted, rtt_us, from the socket's TCP_INFO at hang-up",
    )
    received_file: str | None = None
    sent_file: str | None = None
    pacing: dict[str, float] = Field(default_factory=dict, description="sender lateness against its 20 ms clock")
    rtcp: dict[str, int] = Field(default_factory=dict, description="RTCP compound packets sent and received (rtp)")
    error: str | None = None
    # a browser side (chromium)
    network_priority: str | None = Field(None, description="the audio sender's networkPriority (chromium)")
    clip_lead_s: float = Field(0.0, description="silence before the clip in what the sender loops (chromium)")
    launch_s: float | None = Field(None, description="seconds from launching the browser to its page loaded")
    played_file: str | None = Field(None, description="what the browser played out (chromium)")
    browser_stats_file: str | None = Field(None, description="getStats() once a second (chromium)")
    browser: dict[str, str] = Field(default_factory=dict, description="the browser's version and user agent")


class CallRecord(Record):
    """One call as it went: outcome, setup time, when it connected and ended, both sides' summaries."""

    id: str
    name: str
    caller: str
    callee: str
    codec: str
    dscp: int
    start: float = Field(description="scheduled, seconds into the workload")
    duration: float
    talk: float | None = Field(
        default=None, description="asked-for talk time: the call hangs up this long after connecting"
    )
    setup_timeout: float
    endpoints: dict[str, str] = Field(default_factory=lambda: {"caller": "aiortc", "callee": "aiortc"})
    marking: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per side: the DSCP it sets itself or the networkPriority it asks for"
    )
    opus: list[Any] = Field(
        default_factory=list,
        description="how aiortc senders encode Opus: [bitrate bit/s, in-band FEC, expected loss %]",
    )
    clips: dict[str, str] = Field(
        default_factory=lambda: {"caller": "client", "callee": "gateway"},
        description="per side: the shipped clip it sends, or the prefix of a user's reference prepared for the run",
    )
    speech: dict[str, str] = Field(default_factory=dict, description="per side: the user's reference WAV, if any")
    pattern: str = Field("continuous", description="continuous, or conversation (ITU-T P.59 talk spurts)")
    activity: dict[str, float] = Field(
        default_factory=dict,
        description="conversation: each side's share of talking time, double talk and mutual silence",
    )
    clip_offset: dict[str, float] = Field(
        default_factory=dict, description="per side: where in the clip it starts, as a fraction of the loop"
    )
    ice: dict[str, Any] = Field(
        default_factory=dict, description="the caller's ICE as asked: turn transports, stun, policy (no credentials)"
    )
    outcome: str = "pending"  # connected | failed | dropped | error
    reason: str = ""
    offered_at: float | None = None
    connected_at: float | None = None
    dropped_at: float | None = None
    setup_s: float | None = None
    drain_s: float | None = Field(
        default=None, description="seconds between stopping the media and hanging up, while the path drained"
    )
    sides: dict[str, LegSummary] = Field(default_factory=dict)


class TrafficRecord(Record):
    name: str
    kind: str
    source: str
    sink: str
    port: int
    started_at: float | None = None
    stopped_at: float | None = None
    source_reports: list[dict[str, Any]] = Field(default_factory=list)
    sink_reports: list[dict[str, Any]] = Field(default_factory=list)
    error: str = ""


class TimelineEntry(Record):
    model_config = Record.model_config | {"extra": "allow"}  # actions add their own details

    at: float = Field(description="scheduled, seconds into the workload")
    effective: float = Field(description="when it took effect")
    what: str


class QueueSample(Record):
    """Cumulative kernel counters of one qdisc or class at one second."""

    time: float
    node: str
    interface: str
    object: str  # qdisc | class
    kind: str
    handle: str
    bytes: int
    packets: int
    drops: int
    overlimits: int
    backlog_bytes: int
    backlog_packets: int


class WorkloadRecord(ResultFile):
    t0: float = Field(description="epoch seconds at the workload's start")
    duration: float
    calls: list[CallRecord]
    traffic: list[TrafficRecord]
    timeline: list[TimelineEntry]
    taps: dict[str, str] = Field(description="'node/interface' -> file prefix")
    tap_stats: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="'node/interface' -> the tap's closing summary: packets, dropped, cpu",
    )
    queues: list[QueueSample]
    queue_classes: dict[str, dict[str, dict[str, str]]] = Field(description="node -> interface -> handle -> class")
    engines: dict[str, dict[str, Any]] = Field(description="userspace impairment engines' counters per link end")
    agents: dict[str, dict[str, Any]] = Field(description="node -> CPU its agent and children used")
    endpoints: dict[str, dict[str, Any]] = Field(default_factory=dict, description="node/kind -> endpoint statistics")
    out_dir: str
    fault: str | None = Field(
        None,
        description="why the workload stopped early: a testbed process died or a lab command failed (what was "
        "recorded until then is kept; the run exits 4)",
    )
    phases: dict[str, float] = Field(
        default_factory=dict,
        description="seconds per harness phase: lab_up, agents_ready (agents, endpoints prepared, taps), workload "
        "(t0 to the scenario's last action), drain (calls hanging up), collect (records, agents closed), teardown",
    )
