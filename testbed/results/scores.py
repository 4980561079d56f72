"""``scores.json``: what scoring found for each call direction of one variant (no lab code involved)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from testbed.results.base import Record, ResultFile
from testbed.results.distribution import (
    DEFAULT_MOS_THRESHOLD,
    DEFAULT_THRESHOLD_SOURCE,
    DirectionMos,
    MosDistribution,
    summarize,
)

SCORES_FILE = "scores.json"


class LossStats(Record):
    sent: int
    received: int
    lost: int
    fraction: float | None = Field(description="lost / sent")
    runs: int = Field(description="loss bursts: runs of consecutive lost packets")
    mean_burst: float
    max_burst: int
    burst_ratio: float | None = Field(description="G.113 BurstR; 1 when nothing was lost, null when everything was")


class DelayStats(Record):
    """One-way delay of received packets in ms (null when nothing arrived)."""

    min_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None


class JitterStats(Record):
    """RFC 3550 interarrival jitter in ms."""

    final_ms: float | None
    mean_ms: float | None
    max_ms: float | None


class SecondSeries(Record):
    """Network figures per second of send time."""

    start_s: list[float]
    sent: list[int]
    lost: list[int]
    loss_fraction: list[float | None]
    mean_delay_ms: list[float | None]
    p95_delay_ms: list[float | None]
    jitter_ms: list[float | None]


class LossBins(Record):
    """Packets sent and lost per ``bin_s`` of send time from the direction's first packet (0.1 s): what
    threshold windows shorter than a second are evaluated on."""

    bin_s: float
    sent: list[int]
    lost: list[int]


class NetworkStats(Record):
    loss: LossStats
    delay: DelayStats
    jitter: JitterStats
    reordered: int
    duplicates: int
    per_second: SecondSeries
    in_flight: int = Field(
        0,
        description="packets still on the path when the listener hung up (not arrived, sent later than the "
        "hang-up minus the highest one-way delay seen): their fate is unknown, so no figure counts them",
    )
    loss_bins: LossBins | None = None


class PlayoutStats(Record):
    """What the playout model made of the received packets."""

    rate: int
    frames: int
    played: int
    lost: int = Field(description="frames whose packet never arrived")
    late: int = Field(description="frames whose packet arrived after its playout time")
    concealed: int
    effective_loss: float = Field(description="(lost + late - fec_recovered) / frames: the E-model's Ppl")
    fec_recovered: int = Field(
        0, description="lost or late frames rebuilt from the next packet's in-band FEC (Opus), not concealed"
    )
    expanded: int = Field(
        0,
        description="20 ms frames concealed while the buffer ran dry waiting for a late packet (NetEq's expand); "
        "the wait is then accelerated away",
    )
    burst_ratio: float | None
    buffer: str
    mean_buffer_delay_ms: float | None


class PerSecondMos(Record):
    """E-model MOS over a 3 s window around each second, for timeline plots."""

    second: list[int] = Field(default_factory=list)
    mos_emodel: list[float] = Field(default_factory=list)
    effective_loss: list[float] = Field(default_factory=list)
    mean_delay_ms: list[float | None] = Field(default_factory=list)


class DscpOnWire(Record):
    """What the sender marked its RTP with, counted on its own interface (not what it was told to)."""

    packets: int
    marked_ef: float = Field(description="fraction of the RTP packets marked EF (46)")
    values: dict[str, float] = Field(description="DSCP value -> fraction of the packets")


class ModelFigures(Record):
    """The playout model's figures for a direction whose headline is a browser's own playout."""

    mos_emodel: float | None
    mos_pesq: float | None
    ta_ms: float | None
    ppl_percent: float | None
    concealed_fraction: float | None = Field(description="the model's effective loss: lost + late frames")
    mean_buffer_delay_ms: float | None
    pesq_note: str = ""


class BrowserFigures(Record):
    """Chromium's own account (getStats() at media stop) and PESQ of what it played out."""

    packets_received: int
    packets_lost: int
    packets_discarded: int
    jitter_ms: float | None
    mean_jitter_buffer_ms: float | None = Field(description="jitterBufferDelay / jitterBufferEmittedCount")
    target_jitter_buffer_ms: float | None
    concealed_fraction: float | None = Field(description="concealedSamples / totalSamplesReceived")
    silent_concealed_samples: int
    concealment_events: int
    inserted_samples: int
    removed_samples: int
    fec_packets_received: int
    fec_packets_discarded: int
    candidate_pair: dict[str, str | None]
    version: str
    mos_pesq: float | None = None
    pesq_note: str = ""
    played_s: float = 0.0


class DirectionScores(Record):
    """One direction of one call: network -> playout -> E-model and PESQ."""

    codec: str
    wideband: bool
    network: NetworkStats | None = None
    playout: PlayoutStats | None = None
    ta_ms: float | None = None
    ppl_percent: float | None = None
    burst_ratio: float | None = None
    r: float | None = None
    mos_visqol: float | None = Field(
        None, description="ViSQOL (speech mode, visqol-python) of the same audio as PESQ: a second perceptual MOS"
    )
    mos_emodel: float | None = None
    mos_pesq: float | None = None
    pesq_mode: str | None = None
    pesq_note: str = ""
    per_second: PerSecondMos = Field(default_factory=PerSecondMos)
    note: str = ""
    audio_rate: int = 0
    audio_file: str | None = Field(
        None, description="what the listener heard (the audio PESQ scored), a WAV relative to the variant directory"
    )
    reference_file: str | None = Field(
        None, description="the clip that audio is compared with, a WAV relative to the variant directory"
    )
    delay_source: str = Field(
        "application send time",
        description="where send times come from: the application, the sender's interface tap, or RTP timestamps",
    )
    dscp: DscpOnWire | None = None
    listener: str = Field("model", description="whose playout the headline MOS is of: model | chromium")
    fec: dict[str, Any] = Field(
        default_factory=dict,
        description="Opus in-band FEC: sent (the sender encoded it; null: unknown, a browser), decoded (the "
        "model used it), recovered (frames)",
    )
    model: ModelFigures | None = None
    browser: BrowserFigures | None = None

    @field_validator("network", "playout", "dscp", "model", "browser", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """Scoring writes ``{}`` for a stage it could not reach (nothing sent, nothing received)."""
        return None if value == {} else value


class UnscoredDirection(Record):
    """A direction that has no records to score (a side that never connected or failed)."""

    note: str


class CallPath(Record):
    """Which path a call's media took and how long each step of setting it up took: what the vendors'
    network tests report (candidate types, relay protocol, TURN allocation time, "TURN required")."""

    caller_pair: dict[str, str | None] = Field(default_factory=dict, description="the caller's ICE pair")
    callee_pair: dict[str, str | None] = Field(default_factory=dict, description="the callee's ICE pair")
    relay_protocol: str | None = Field(None, description="udp | tcp | tls when the caller relayed through TURN")
    turn_required: bool | None = Field(
        None,
        description="the caller relayed although its policy allowed a direct path: the direct one failed "
        "(None when it was not offered TURN or had to relay)",
    )
    timings: dict[str, float] = Field(default_factory=dict, description="the caller's gather_s, ice_s, dtls_s")
    relay_tcp: dict[str, int] = Field(
        default_factory=dict, description="the caller's TCP to its TURN server: segs_out, retransmitted, rtt_us"
    )

    def label(self) -> str:
        """ "host-prflx/udp", "relay(tls)-host/udp": local-remote candidate types and transport."""
        pair = self.caller_pair
        if not pair:
            return "-"
        local = pair.get("local_type") or "?"
        if local == "relay" and self.relay_protocol:
            local = f"relay({self.relay_protocol})"
        return f"{local}-{pair.get('remote_type') or '?'}/{pair.get('protocol') or '?'}"


class CallScores(Record):
    """A call and its directions, keyed ``SENDER->RECEIVER``: one mergeable row per call."""

    id: str
    name: str
    outcome: str
    reason: str
    setup_s: float | None
    talk_s: float | None = Field(None, description="seconds of media: from connected to the first side stopping it")
    drain_s: float | None = Field(None, description="seconds the path drained between stopping media and hanging up")
    codec: str
    dscp: int
    directions: dict[str, DirectionScores | UnscoredDirection]
    path: CallPath | None = Field(None, description="the ICE path and setup times (calls with ice: or a relay)")

    def scored(self) -> dict[str, DirectionScores]:
        return {label: d for label, d in self.directions.items() if isinstance(d, DirectionScores)}


def mos_rows(calls: Sequence[CallScores]) -> Iterator[DirectionMos]:
    """Every direction of ``calls`` with its headline MOS (None where it has none)."""
    for call in calls:
        for label, direction in call.directions.items():
            scored = direction if isinstance(direction, DirectionScores) else None
            yield DirectionMos(
                call.id, label, scored.mos_emodel if scored else None, scored.mos_pesq if scored else None
            )


def mos_distribution(
    calls: Sequence[CallScores], threshold: float = DEFAULT_MOS_THRESHOLD, source: str = DEFAULT_THRESHOLD_SOURCE
) -> MosDistribution:
    """The MOS distribution over every direction of ``calls`` (``testbed.results.distribution``)."""
    return summarize(mos_rows(calls), threshold, source)


class VariantScores(ResultFile):
    variant: str
    calls: list[CallScores]
    distribution: MosDistribution | None = Field(
        default=None,
        description="MOS over every call direction; filled in when absent (older files), against the default "
        "bar (scores.json knows no scenario: result.json's per-variant distribution uses the scenario's)",
    )

    @model_validator(mode="after")
    def _fill_distribution(self) -> Self:
        if self.distribution is None:
            self.distribution = mos_distribution(self.calls)
        return self
