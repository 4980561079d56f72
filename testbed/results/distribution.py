"""A variant's MOS as a distribution over its call directions: what a run of hundreds of calls is read by
(median, 5th percentile, minimum, the share below a bar, the worst directions by name). Pure: plain
values in, a typed record out; ``testbed.results.scores`` feeds it a variant's calls."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from pydantic import Field

from testbed.results.base import Record

__all__ = [
    "DEFAULT_MOS_THRESHOLD",
    "DEFAULT_THRESHOLD_SOURCE",
    "PERCENTILE_METHOD",
    "WORST_KEPT",
    "DirectionMos",
    "MosDistribution",
    "MosSummary",
    "WorstDirection",
    "percentile",
    "percentile_name",
    "summarize",
]

# ITU-T G.107 (Annex B): R 70 is the lower edge of "some users dissatisfied"; MOS(R=70) = 3.597
DEFAULT_MOS_THRESHOLD = 3.6
DEFAULT_THRESHOLD_SOURCE = "ITU-T G.107: R 70, some users dissatisfied"
PERCENTILE_METHOD: Final = "linear"  # numpy's default; Hyndman & Fan type 7, as R's and Excel's PERCENTILE.INC
WORST_KEPT = 5
DIGITS = 3


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by ``np.percentile(method="linear")``: the sorted
    values ``v[0..n-1]`` are read at position ``q / 100 * (n - 1)``, interpolating linearly between the two
    values around it. So 0 is the minimum, 100 the maximum, 50 the median (the mean of the two middle
    values when n is even), and 5 of 600 values lies between the 30th and 31st smallest."""
    if not values:
        raise ValueError("no values to take a percentile of")
    return float(np.percentile(np.asarray(values, dtype=float), q, method=PERCENTILE_METHOD))


def percentile_name(q: float) -> str:
    """How messages name a percentile: "minimum", "median", "maximum", or "p5", "p99.9"."""
    return {0.0: "minimum", 50.0: "median", 100.0: "maximum"}.get(float(q), f"p{q:g}")


@dataclass(frozen=True)
class DirectionMos:
    """One call direction's headline MOS (None: not measured)."""

    call: str
    direction: str
    mos_emodel: float | None
    mos_pesq: float | None = None


class MosSummary(Record):
    """One MOS over a variant's call directions that have it."""

    count: int = Field(description="call directions with this MOS")
    median: float
    p5: float = Field(description="5th percentile (np.percentile, method 'linear')")
    min: float


class WorstDirection(Record):
    call: str = Field(description="the call's id")
    direction: str
    mos_emodel: float


class MosDistribution(Record):
    """A variant's MOS over all its call directions: what a run of many calls is read and gated by."""

    directions: int = Field(description="call directions with an E-model MOS (the distribution's size)")
    unscored: int = Field(
        default=0, description="call directions without an E-model MOS (not connected, nothing received)"
    )
    threshold: float = Field(description="the MOS E-model bar 'below_threshold' counts against")
    threshold_source: str = Field(description="where the bar comes from: the scenario's rule, or ITU-T G.107's R 70")
    below_threshold: float | None = Field(description="share (0-1) of the directions with MOS E-model < threshold")
    mos_emodel: MosSummary | None
    mos_pesq: MosSummary | None
    worst: list[WorstDirection] = Field(description=f"the {WORST_KEPT} lowest MOS E-model directions, lowest first")
    unscored_calls: list[str] = Field(
        default_factory=list, description=f"ids of (up to {WORST_KEPT}) calls with an unscored direction"
    )


def _summary(values: list[float]) -> MosSummary | None:
    if not values:
        return None
    median, p5 = (round(percentile(values, q), DIGITS) for q in (50, 5))
    return MosSummary(count=len(values), median=median, p5=p5, min=round(min(values), DIGITS))


def summarize(
    rows: Iterable[DirectionMos],
    threshold: float = DEFAULT_MOS_THRESHOLD,
    source: str = DEFAULT_THRESHOLD_SOURCE,
) -> MosDistribution:
    """The distribution of ``rows`` (every direction of a variant's calls). A direction without an E-model
    MOS is counted as unscored, not as a value; PESQ is summarized over the directions that have it.
    Figures are rounded to 3 decimals; the worst are ordered by MOS, then call id and direction."""
    rows = list(rows)
    scored = [row for row in rows if row.mos_emodel is not None]
    emodel = [row.mos_emodel for row in scored if row.mos_emodel is not None]
    pesq = [row.mos_pesq for row in rows if row.mos_pesq is not None]
    worst = sorted(scored, key=lambda row: (row.mos_emodel, row.call, row.direction))[:WORST_KEPT]
    unscored = [row for row in rows if row.mos_emodel is None]
    return MosDistribution(
        directions=len(emodel),
        unscored=len(unscored),
        threshold=threshold,
        threshold_source=source,
        below_threshold=round(sum(v < threshold for v in emodel) / len(emodel), 4) if emodel else None,
        mos_emodel=_summary(emodel),
        mos_pesq=_summary(pesq),
        worst=[
            WorstDirection(call=row.call, direction=row.direction, mos_emodel=round(row.mos_emodel, DIGITS))
            for row in worst
            if row.mos_emodel is not None
        ],
        unscored_calls=list(dict.fromkeys(row.call for row in unscored))[:WORST_KEPT],
    )
