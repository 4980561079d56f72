"""voip-testbed: check a router's QoS design against real VoIP calls in an emulated network.

``testbed.load(path)`` and ``testbed.score(run)`` are the public API (``testbed.api``); they are
imported on first use, so processes that run inside nodes (``python -m testbed.media.agent``) start
without the lab's and the scoring's imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from testbed.api import Experiment, load, merge, score

__all__ = ["Experiment", "ScoringOptions", "__version__", "load", "merge", "score"]


def __getattr__(name: str) -> Any:
    if name in ("Experiment", "load", "merge", "score"):
        from testbed import api

        return getattr(api, name)
    if name == "ScoringOptions":
        from testbed.scoring.options import ScoringOptions

        return ScoringOptions
    raise AttributeError(f"module 'testbed' has no attribute {name!r}")
