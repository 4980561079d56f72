"""What a scoring pass computes: one value passed from the CLI and the API down to each direction,
instead of a flag per layer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_SCORING", "ScoringOptions"]


@dataclass(frozen=True)
class ScoringOptions:
    """``pesq``: PESQ of the decoded audio (about 0.25 s of CPU per call direction). ``fec``: the playout
    decodes Opus' in-band FEC, as receivers do (off: what FEC is worth). ``visqol``: ViSQOL beside PESQ,
    off by default since it costs about 0.5 s of CPU per second of audio (``scoring.visqol``).
    ``pesq_calls``: PESQ (and the decoded audio) on at most this many calls per variant, evenly spread
    over its call list, as the calibration check of the packet-based figures that every call gets
    (network statistics, playout schedule, E-model); None: every call."""

    pesq: bool = True
    fec: bool = True
    visqol: bool = False
    pesq_calls: int | None = 8

    def pesq_sample(self, calls: list[str]) -> set[str]:
        """The calls of a variant whose audio is decoded (and scored with PESQ, when ``pesq``)."""
        if self.pesq_calls is None or len(calls) <= self.pesq_calls:
            return set(calls)
        if self.pesq_calls <= 0:
            return set()
        picks = np.linspace(0, len(calls) - 1, self.pesq_calls).round().astype(int)
        return {calls[i] for i in picks}


DEFAULT_SCORING = ScoringOptions()
