"""What the console and the HTML report both say about a direction beyond its MOS: the DSCP its sender
really put on the wire, where its one-way delay's send times came from, and, when a browser was the
listener, the browser's own figures beside the playout model's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

from testbed.results import RunResult, VariantResult, metric
from testbed.results.distribution import MosDistribution
from testbed.results.scores import (
    BrowserFigures,
    CallScores,
    DirectionScores,
    DscpOnWire,
    ModelFigures,
    UnscoredDirection,
    mos_distribution,
)
from testbed.units import DSCP_NAMES

MODEL = "model"
RTP_TIMESTAMPS = "RTP timestamps anchored at the first packets"
LISTENER_NAMES = {"model": "playout model", "chromium": "Chromium"}

Pair = tuple[float | None, float | None]  # (the browser's figure, the playout model's)
# a variant with more call directions than this is shown as a distribution (console and HTML report)
MANY_DIRECTIONS = 12

_DSCP_NAMES: dict[int, str] = {}
for _name, _number in DSCP_NAMES.items():  # the scenario's own names; the first for a value (BE for 0)
    _DSCP_NAMES.setdefault(_number, _name)


def percent(fraction: float | None, digits: int = 1) -> str:
    """A fraction as a percentage; a fraction strictly between 0 and 1 never prints as 0% or 100%."""
    if fraction is None:
        return "-"
    if fraction in (0.0, 1.0):
        return f"{100 * fraction:.0f}%"
    step = 10.0**-digits
    return f"{min(max(100 * fraction, step), 100 - step):.{digits}f}%"


def ef_on_wire(scores: DirectionScores | UnscoredDirection | None) -> str:
    """The share of the sender's RTP packets marked EF on its own interface: "100%", "0%", or "-" when
    the sender's interface saw none of them."""
    dscp = scores.dscp if isinstance(scores, DirectionScores) else None
    if dscp is None or not dscp.packets:
        return "-"
    return percent(dscp.marked_ef)


def dscp_name(value: str | int) -> str:
    number = int(value)
    name = _DSCP_NAMES.get(number)
    return f"{name} ({number})" if name else str(number)


def dscp_values(dscp: DscpOnWire | None) -> str:
    """Every DSCP the sender used, most used first: "EF (46) 100%" or "EF (46) 99.7%, BE (0) 0.3%"."""
    if dscp is None or not dscp.packets:
        return "-"
    ordered = sorted(dscp.values.items(), key=lambda item: (-item[1], int(item[0])))
    return ", ".join(f"{dscp_name(value)} {percent(share)}" for value, share in ordered)


def candidate_pair(browser: BrowserFigures | None) -> str:
    """The ICE pair the browser's media used, compactly: "host/udp", "srflx-host/udp", "relay(tcp)/udp"."""
    if browser is None:
        return "-"
    pair = browser.candidate_pair
    local, remote, protocol = pair.get("local_type"), pair.get("remote_type"), pair.get("protocol")
    if not (local or remote or protocol):
        return "-"
    kinds = local or "?"
    if local == "relay" and pair.get("relay_protocol"):
        kinds = f"relay({pair['relay_protocol']})"
    if remote and remote != local:
        kinds = f"{kinds}-{remote}"
    return f"{kinds}/{protocol or '?'}"


def heard_by_browser(scores: DirectionScores | UnscoredDirection | None) -> TypeGuard[DirectionScores]:
    """Whether the direction's headline MOS is of a browser's own playout rather than the model's."""
    return isinstance(scores, DirectionScores) and scores.listener != MODEL


def listener_name(listener: str) -> str:
    return LISTENER_NAMES.get(listener, listener)


@dataclass(frozen=True)
class BrowserListener:
    """One direction a browser listened to, with the browser's figures and the model's beside them."""

    variant: str
    call: CallScores
    direction: str
    scores: DirectionScores

    @property
    def browser(self) -> BrowserFigures | None:
        return self.scores.browser

    @property
    def model(self) -> ModelFigures | None:
        return self.scores.model

    # each pair below: (the browser's, the model's)

    @property
    def concealed(self) -> Pair:
        """Concealed fraction: Chrome's concealedSamples / totalSamplesReceived; the model's lost and late
        frames."""
        b, m = self.browser, self.model
        return (b.concealed_fraction if b else None, m.concealed_fraction if m else None)

    @property
    def buffer_ms(self) -> Pair:
        """Mean buffer delay: Chrome's jitterBufferDelay / jitterBufferEmittedCount; the model's."""
        b, m = self.browser, self.model
        return (b.mean_jitter_buffer_ms if b else None, m.mean_buffer_delay_ms if m else None)

    @property
    def pesq(self) -> Pair:
        b, m = self.browser, self.model
        return (b.mos_pesq if b else None, m.mos_pesq if m else None)

    @property
    def emodel(self) -> Pair:
        """The headline E-model (Chrome's buffer delay in Ta, its concealed fraction as Ppl); the model's."""
        return (self.scores.mos_emodel, self.model.mos_emodel if self.model else None)

    @property
    def ta_ms(self) -> Pair:
        return (self.scores.ta_ms, self.model.ta_ms if self.model else None)

    @property
    def ppl_percent(self) -> Pair:
        return (self.scores.ppl_percent, self.model.ppl_percent if self.model else None)


def browser_listeners(result: RunResult) -> list[BrowserListener]:
    """Every direction of the run whose headline MOS is a browser's, in table order."""
    return [
        BrowserListener(variant.name, call, label, scores)
        for variant in result.variants
        for call in variant.calls
        for label, scores in call.scored().items()
        if heard_by_browser(scores)
    ]


def browser_versions(result: RunResult) -> list[str]:
    """The browser versions that listened in the run (each once)."""
    versions = [row.browser.version for row in browser_listeners(result) if row.browser and row.browser.version]
    return list(dict.fromkeys(versions))


@dataclass(frozen=True)
class Band:
    """A named MOS range (``above`` is its lower bound; excellent's is exclusive) and its table colour."""

    name: str
    above: float
    css: str


# Twilio's Voice SDK preflight test names a call's quality from its average MOS: excellent above 4.2,
# great 4.1-4.2, good 3.7-4.1, fair 3.1-3.7, degraded below 3.1 (iOS SDK, TVOPreflightCallQuality; the
# JavaScript SDK's PreflightTest.CallQuality says the same at one decimal: good 3.7-4.0, fair 3.1-3.6).
MOS_BANDS = (
    Band("excellent", 4.2, "good"),
    Band("great", 4.1, "good"),
    Band("good", 3.7, "good"),
    Band("fair", 3.1, "fair"),
    Band("degraded", float("-inf"), "bad"),
)
BANDS_SOURCE = (
    "MOS bands of Twilio's preflight test (Voice SDK callQuality): excellent > 4.2, great 4.1-4.2, "
    "good 3.7-4.1, fair 3.1-3.7, degraded < 3.1"
)


def mos_band(value: float) -> Band:
    """The band a MOS falls in (``MOS_BANDS``)."""
    if value > MOS_BANDS[0].above:
        return MOS_BANDS[0]
    return next(band for band in MOS_BANDS[1:] if value >= band.above)


def mos_grade(value: float | None) -> str:
    """The table colour of a MOS (its band's: good from 3.7, fair from 3.1, else bad); '' without one."""
    return "" if value is None else mos_band(value).css


def distribution(variant: VariantResult) -> MosDistribution:
    """The variant's MOS distribution as result.json has it (against the scenario's bar)."""
    return variant.distribution or mos_distribution(variant.calls)


def many_directions(result: RunResult) -> bool:
    """Whether a variant of the run has more than ``MANY_DIRECTIONS`` call directions: the console and the
    report then show each variant as a distribution and its worst directions by name."""
    return any(sum(len(call.directions) for call in v.calls) > MANY_DIRECTIONS for v in result.variants)


@dataclass(frozen=True)
class Direction:
    """One call direction of a variant run, found by name."""

    variant: str
    call: CallScores
    direction: str
    scores: DirectionScores | UnscoredDirection


def worst_of(variant: VariantResult) -> list[Direction]:
    """The variant's lowest MOS E-model directions (its distribution's ``worst``), lowest first."""
    calls = {call.id: call for call in variant.calls}
    found = []
    for worst in distribution(variant).worst:
        call = calls.get(worst.call)
        scores = call.directions.get(worst.direction) if call else None
        if call is not None and scores is not None:
            found.append(Direction(variant.name, call, worst.direction, scores))
    return found


def worst_directions(result: RunResult, count: int) -> list[Direction]:
    """The ``count`` lowest MOS E-model directions of the whole run, lowest first."""
    rows = [row for variant in result.variants for row in worst_of(variant)]
    rows.sort(key=lambda row: (metric(row.call, row.scores, "mos_emodel") or 0.0, row.variant, row.call.id))
    return rows[:count]
