"""What the console and the HTML report both say about a direction beyond its MOS: the DSCP its sender
really put on the wire, where its one-way delay's send times came from, and, when a browser was the
listener, the browser's own figures beside the playout model's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

from testbed.results import RunResult
from testbed.results.scores import (
    BrowserFigures,
    CallScores,
    DirectionScores,
    DscpOnWire,
    ModelFigures,
    UnscoredDirection,
)
from testbed.units import DSCP_NAMES

MODEL = "model"
RTP_TIMESTAMPS = "RTP timestamps anchored at the first packets"
LISTENER_NAMES = {"model": "playout model", "chromium": "Chromium"}

Pair = tuple[float | None, float | None]  # (the browser's figure, the playout model's)

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
