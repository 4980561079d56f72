"""A scenario's pass/fail rules for CI: a metric's bound, or one variant's required gain over another.

Without ``percentile`` the bound applies to every matching call direction (one check each). With
``percentile: P`` (0 = minimum, 50 = median, 100 = maximum) it applies to the P-th percentile of the
metric over all matching call directions of each variant (one check per variant); with ``over`` as well,
to the P-th percentile of the per-direction gains, each call direction paired with the same call and
direction in the other variant (not the difference of the two variants' percentiles). Checked by
``testbed.report.thresholds``.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from testbed.scenario.types import Label, Strict

__all__ = ["Metric", "Threshold"]

Metric = Literal["mos_emodel", "mos_pesq", "loss", "p95_delay", "jitter", "setup_time", "marked_ef"]


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
        return self
