"""The emulated network: nodes, links, impairments and router QoS. Knows nothing of audio.

``Lab`` is imported on first use: the processes that run inside nodes from this package (the userspace
impairment engine, ``python -m testbed.lab.engine``) start without the lab's own imports (pyroute2, the
scenario loader), which cost them most of their start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from testbed.lab.lab import Lab

__all__ = ["Lab"]


def __getattr__(name: str) -> Any:
    if name == "Lab":
        from testbed.lab.lab import Lab

        return Lab
    raise AttributeError(f"module 'testbed.lab' has no attribute {name!r}")
