"""The workload of one variant: calls, cross traffic, packet taps and the timeline, driven over a lab.

``Workload`` is imported on first use: the runner asks the fork server to encode a variant's clips
(``scenario_clips``) before it imports the lab, so the encoding overlaps those imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from testbed.workload.clips import scenario_clips

if TYPE_CHECKING:
    from testbed.workload.workload import Workload

__all__ = ["Workload", "scenario_clips"]


def __getattr__(name: str) -> Any:
    if name == "Workload":
        from testbed.workload.workload import Workload

        return Workload
    raise AttributeError(f"module 'testbed.workload' has no attribute {name!r}")
