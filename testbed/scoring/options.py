"""What a scoring pass computes: one value passed from the CLI and the API down to each direction,
instead of a flag per layer."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_SCORING", "ScoringOptions"]


@dataclass(frozen=True)
class ScoringOptions:
    """``pesq``: PESQ of the decoded audio (about 0.25 s of CPU per call direction). ``fec``: the playout
    decodes Opus' in-band FEC, as receivers do (off: what FEC is worth). ``visqol``: ViSQOL beside PESQ,
    off by default since it costs about 0.5 s of CPU per second of audio (``scoring.visqol``)."""

    pesq: bool = True
    fec: bool = True
    visqol: bool = False


DEFAULT_SCORING = ScoringOptions()
