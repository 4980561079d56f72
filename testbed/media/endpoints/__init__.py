"""Call endpoints that run inside nodes, by kind, behind one interface (``base.Endpoint``).

Kinds are imported only when a leg asks for them, so an agent that only runs taps and traffic never
loads WebRTC.
"""

from __future__ import annotations

import importlib

from testbed.media.endpoints.base import Description, EmitEvent, Endpoint, LegSpec, Preparation

# kind -> "module:class"; a new endpoint kind is one line here and one module
KINDS = {
    "aiortc": "testbed.media.endpoints.aiortc:AiortcEndpoint",
    "chromium": "testbed.media.endpoints.chromium:ChromiumEndpoint",
    "rtp": "testbed.media.endpoints.rtp:LightEndpoint",
}


def create(kind: str, emit: EmitEvent) -> Endpoint:
    """A fresh endpoint of ``kind`` for this node's agent."""
    if kind not in KINDS:
        raise ValueError(f"unknown call endpoint {kind!r} (known: {', '.join(KINDS)})")
    module, _, name = KINDS[kind].partition(":")
    endpoint_class = getattr(importlib.import_module(module), name)
    endpoint: Endpoint = endpoint_class(emit)
    return endpoint


__all__ = ["KINDS", "Description", "EmitEvent", "Endpoint", "LegSpec", "Preparation", "create"]
