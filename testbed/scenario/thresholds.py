"""A scenario's pass/fail rules for CI: a metric's bound, or one variant's required gain over another.

Without ``percentile`` the bound applies to every matching call direction (one check each). With
``percentile: P`` (0 = minimum, 50 = median, 100 = maximum) it applies to the P-th percentile of the
metric over all matching call directions of each variant (one check per variant); with ``over`` as well,
to the P-th percentile of the per-direction gains, each call direction paired with the same call and
direction in the other variant (not the difference of the two variants' percentiles). With ``window``
the bound holds in every window of that length of each direction (with ``samples: K``: in no window do
K or more of its one-second samples break it). ``{preset: teams}`` and ``{preset: twilio}`` stand for
the vendors' published network targets as rules of this one model (``PRESETS``). Checked by
``testbed.report.thresholds`` and ``testbed.report.windows``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BeforeValidator, Field, PositiveInt, field_validator, model_validator

from testbed.scenario.types import Duration, Label, Strict

__all__ = ["PRESETS", "Metric", "Preset", "Threshold", "Thresholds", "expand_presets"]

Metric = Literal[
    "mos_emodel", "mos_pesq", "loss", "p95_delay", "jitter", "setup_time", "marked_ef", "mean_delay", "rtt", "reorder"
]
WINDOWED = ("loss", "jitter", "mean_delay", "rtt", "mos_emodel")  # the metrics with a series over the call
SUBSECOND = ("loss",)  # kept per 0.1 s (LossBins); the others per second
MAX_WINDOW_S = 3600.0
Preset = Literal["teams", "twilio"]
PRESET_SCOPE = ("preset", "variant", "call", "direction")  # what a preset entry may say besides its name

# Microsoft Teams' network targets from the client to the Microsoft edge ("Prepare your organization's
# network for Teams": latency one way < 50 ms, RTT < 100 ms, loss < 1% in any 15 s, jitter < 30 ms in any
# 15 s, packet reorder < 0.05%, burst loss < 10% in any 200 ms). Twilio's Voice SDK network warnings, which
# its preflight test reports (Voice Insights SDK events: high-rtt, RTT > 400 ms; high-jitter, > 30 ms;
# high-packet-loss, > 1%; each in 3 of the last 5 one-second samples; the SDKs also warn on loss > 3%
# on average; low-mos, MOS < 3.5 in 3 of 5 samples).
PRESETS: dict[str, list[dict[str, Any]]] = {
    "teams": [
        {"metric": "mean_delay", "max": 50},
        {"metric": "rtt", "max": 100},
        {"metric": "loss", "max": 1, "window": "15s"},
        {"metric": "loss", "max": 10, "window": "200ms"},
        {"metric": "jitter", "max": 30, "window": "15s"},
        {"metric": "reorder", "max": 0.05},
    ],
    "twilio": [
        {"metric": "rtt", "max": 400, "window": "5s", "samples": 3},
        {"metric": "jitter", "max": 30, "window": "5s", "samples": 3},
        {"metric": "loss", "max": 1, "window": "5s", "samples": 3},
        {"metric": "loss", "max": 3},
        {"metric": "mos_emodel", "min": 3.5, "window": "5s", "samples": 3},
    ],
}


def expand_presets(items: object) -> object:
    """A scenario's ``thresholds`` with each ``{preset: NAME, [variant, call, direction]}`` replaced by
    the preset's rules, each keeping the entry's scope and the preset's name (anything else: left to the
    model's own errors)."""
    if not isinstance(items, list):
        return items
    expanded: list[object] = []
    for item in items:
        if not (isinstance(item, dict) and "preset" in item and "metric" not in item):
            expanded.append(item)
            continue
        name = item["preset"]
        extra = sorted(set(item) - set(PRESET_SCOPE))
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
        if extra:
            raise ValueError(
                f"preset {name}: {', '.join(extra)} not allowed beside a preset (only variant, call, direction)"
            )
        expanded += [{**rule, **item} for rule in PRESETS[name]]
    return expanded


class Threshold(Strict):
    """A pass/fail rule for CI: a metric's bound, or a variant's required gain over another."""

    metric: Metric
    min: float | None = None
    max: float | None = None
    variant: Label | None = None
    call: Label | None = None
    direction: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]+->[A-Za-z0-9_.-]+$",
        description="only this call direction, SENDER->RECEIVER by node (e.g. client->gateway: the uplink)",
    )
    over: Label | None = Field(default=None, description="gain rule: compare 'variant' with this variant")
    percentile: float | None = Field(
        default=None,
        description="bound this percentile (0-100: 0 = minimum, 50 = median) of the metric over each variant's "
        "matching call directions instead of each direction; with 'over', the percentile of the paired gains",
        json_schema_extra={"minimum": 0, "maximum": 100},
    )
    window: Duration | None = Field(
        default=None,
        description="the bound must hold in every window of this length of each direction, sliding by 0.1 s "
        "(loss) or 1 s (jitter, mean_delay, rtt, mos_emodel); a window longer than the call is the whole call",
    )
    samples: PositiveInt | None = Field(
        default=None,
        description="with window: fail where this many or more of a window's one-second samples break the bound "
        "(Twilio's warnings: 3 of 5), rather than the window's whole value",
    )
    preset: Preset | None = Field(
        default=None,
        description="the vendor's published targets as rules: teams (Microsoft's network targets to its edge), "
        "twilio (its preflight warnings); scope them with variant, call, direction",
    )

    @field_validator("percentile")
    @classmethod
    def _percent(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and 0 <= value <= 100):
            raise ValueError(f"percentile {value:g} is out of range; allowed: 0 to 100 (0 = minimum, 50 = median)")
        return value

    @model_validator(mode="after")
    def _bounded(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs min or max")
        if self.over is not None and self.variant is None:
            raise ValueError("a gain rule ('over') needs 'variant'")
        if self.samples is not None and self.window is None:
            raise ValueError("'samples' counts one-second samples in a window: it needs 'window'")
        if self.window is not None:
            self._check_window(self.window)
        return self

    def _check_window(self, window: float) -> None:
        if self.metric not in WINDOWED:
            raise ValueError(f"'window' applies to {', '.join(WINDOWED)}, not {self.metric}")
        if self.percentile is not None or self.over is not None:
            raise ValueError("a windowed rule bounds each direction's windows: no 'percentile' or 'over' with it")
        shortest = 0.1 if self.metric in SUBSECOND and self.samples is None else 1.0
        if not (shortest <= window <= MAX_WINDOW_S) or abs(window / shortest - round(window / shortest)) > 1e-6:
            raise ValueError(
                f"window {window:g}s: allowed {shortest:g}s to {MAX_WINDOW_S:g}s in steps of {shortest:g}s for "
                f"{self.metric}{' with samples' if self.samples else ''}"
            )
        if self.samples is not None and self.samples > round(window):
            raise ValueError(
                f"samples {self.samples}: a {window:g}s window has only {round(window)} one-second samples"
            )


Thresholds: TypeAlias = Annotated[  # a scenario's rules, its preset entries expanded (``expand_presets``)
    list[Threshold],
    BeforeValidator(expand_presets),
    Field(description="pass/fail rules; {preset: teams} or {preset: twilio}, with variant, call, direction, "
          "adds the vendor's rules"),
]  # fmt: skip
