"""The ``sweep:`` section: parameters named by their path in the scenario, each with the values to try.

The cross product of the values (and the variants, the axis named ``variant``) gives the trials; each
trial is the scenario with its values set (``testbed.sweep.plan``) and is validated like any scenario
before anything runs. A path walks the scenario's mappings by key and its lists by index:
``links.wan.router.rate``, ``calls.0.count``, ``traffic.1.rate``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from testbed.scenario.types import Strict

MAX_TRIALS = 10_000  # trials of one plan (repetitions not counted): beyond that a plan is a mistake
PATH_PATTERN = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class SweepSpec(Strict):
    """Which scenario parameters to sweep, with which values, how often and in what order."""

    parameters: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="path in the scenario -> the values to try (links.wan.router.rate: [2mbit, 5mbit]); "
        "'variant' restricts the variants axis (default: every variant)",
    )
    repeat: int = Field(default=1, ge=1, le=100, description="repetitions of every trial (the statistics' replicates)")
    order: Literal["shuffled", "listed"] = Field(
        default="shuffled", description="run order: shuffled (seeded, recorded) so drift does not pose as an effect"
    )
    seed: int | None = Field(default=None, ge=0, description="the shuffle's seed (default: a new one, recorded)")

    @field_validator("parameters")
    @classmethod
    def _paths(cls, parameters: dict[str, list[Any]]) -> dict[str, list[Any]]:
        trials = 1
        for path, values in parameters.items():
            if not PATH_PATTERN.match(path):
                raise ValueError(f"{path!r} is not a parameter path: keys and list indexes joined by '.'")
            if path.split(".")[0] in ("sweep", "name"):
                raise ValueError(f"{path}: a sweep cannot set its own section or the scenario's name")
            if not values:
                raise ValueError(f"{path}: give at least one value")
            if len({repr(v) for v in values}) != len(values):
                raise ValueError(f"{path}: a value is listed twice")
            trials *= len(values)
        if trials > MAX_TRIALS:
            raise ValueError(f"the parameters make {trials} points; at most {MAX_TRIALS}")
        return parameters
