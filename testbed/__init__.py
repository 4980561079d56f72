"""voip-testbed: check a router's QoS design against real VoIP calls in an emulated network."""

__version__ = "0.1.0"
