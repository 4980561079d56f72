"""A scenario's pass/fail rules for CI: a metric's bound, or one variant's required gain over another."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

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
    over: Label | None = Field(default=None, description="gain rule: compare 'variant' with this variant")

    @model_validator(mode="after")
    def _bounded(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs min or max")
        if self.over is not None and self.variant is None:
            raise ValueError("a gain rule ('over') needs 'variant'")
        return self
