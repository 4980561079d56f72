"""What runs inside nodes: agents, calls, packet taps, cross traffic."""
