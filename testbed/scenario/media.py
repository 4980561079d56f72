"""How a call's senders encode their speech. Browsers send Opus mono at about 32 kbit/s with in-band FEC
negotiated (``useinbandfec=1``) and provision it for the loss they measure: libopus adds a low-rate copy
of each frame to the next packet only when told to expect loss, at the cost of the primary bitrate.
The testbed's aiortc senders encode their clips once, before the call, so they cannot adapt: by default
they provision FEC for the random loss the scenario configures on its links (what a browser would
settle at once it has measured it; 0 on a clean path, where a browser sends no FEC either). A browser
side encodes with its own settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from testbed.scenario.types import Percent, Rate, Strict

__all__ = ["OpusSpec", "SpeechSpec"]


class OpusSpec(Strict):
    """Opus as the aiortc senders encode it (libopus, VoIP mode, mono, 20 ms frames)."""

    bitrate: Rate = Field(default=32_000, description="target bitrate, e.g. 32kbit (browsers: about 32 kbit/s)")
    fec: bool = Field(default=True, description="in-band FEC (LBRR): the next packet can rebuild a lost one")
    expected_loss: Percent | Literal["auto"] = Field(
        default="auto",
        description="the loss the encoder provisions FEC for (libopus' packet_loss_perc); auto: the highest "
        "random loss the scenario configures on a link end",
    )

    def key(self, configured_loss: float = 0.0) -> tuple[int, bool, int]:
        """What identifies an encoding of a clip (the encoder's cache key); ``configured_loss`` (percent)
        stands for ``auto``."""
        loss = configured_loss if self.expected_loss == "auto" else self.expected_loss
        return self.bitrate, self.fec, min(100, int(round(loss)))


class SpeechSpec(Strict):
    """What each side says: the shipped clips, or 16-bit PCM WAV files you own (relative to the scenario
    file), checked at validation (``scenario.speech``) and sent by every endpoint kind; talking all the
    time, or in turns as people do (``testbed.media.conversation``)."""

    from_: str | None = Field(default=None, alias="from", description="what the caller says (a WAV file)")
    to: str | None = Field(default=None, description="what the callee says (a WAV file)")
    pattern: Literal["continuous", "conversation"] = Field(
        default="continuous",
        description="continuous: both sides talk all the time (the best test of the path); conversation: "
        "ITU-T P.59's talk spurts and pauses (about 40% activity per side, mostly one at a time; silence "
        "sent as the codec sends it), for bandwidth and capacity questions",
    )

    def paths(self) -> dict[str, str]:
        """{"caller": PATH, "callee": PATH} for the sides given."""
        return {side: path for side, path in (("caller", self.from_), ("callee", self.to)) if path}
