"""The emulated network: nodes, links, impairments and router QoS. Knows nothing of audio."""

from testbed.lab.lab import Lab

__all__ = ["Lab"]
