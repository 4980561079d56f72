"""What the live view shows while calls run (``testbed.workload.live`` makes it once a second, a console
view renders it): per call direction the last second's loss, one-way delay, jitter and an E-model MOS
estimate from running counts. Not a result file: these are never scored or stored."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LiveDirection:
    call: str
    direction: str  # SENDER->RECEIVER
    loss_pct: float | None  # of the packets expected in the last second
    delay_ms: float | None  # mean one-way delay of the last second's packets
    jitter_ms: float | None  # RFC 3550, at the last packet
    mos: float | None  # E-model from those, no playout model (an estimate: the scored MOS comes after)


@dataclass(frozen=True)
class LiveSample:
    variant: str
    elapsed_s: float  # of the variant's workload
    duration_s: float
    directions: list[LiveDirection] = field(default_factory=list)


Monitor = Callable[[LiveSample], None]  # called once a second from the sampler's thread
