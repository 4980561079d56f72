"""The project's reference speech clips: what the client and the media gateway send.

Two different talkers and texts, so the two directions of a call can never be confused. Each clip
is 8-12 s of English speech with 0.75 s of silence at both ends, levelled to -26 dBov active speech
level, as mono 16-bit PCM WAV at 16 kHz (wide-band PESQ) and 8 kHz (narrow-band PESQ). See
README.md here for provenance; ``python -m testbed.media.clips.make_clips`` rebuilds them.
"""

from __future__ import annotations

import wave
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["CLIPS", "RATES", "Clip", "clip_path", "load_clip"]

_DIR: Final = Path(__file__).resolve().parent

RATES: Final[tuple[int, ...]] = (8000, 16000)


@dataclass(frozen=True)
class Clip:
    role: str  # who sends it
    voice: str  # espeak-ng voice that spoke it (the text is in make_clips.py and README.md)

    def path(self, rate: int) -> Path:
        return clip_path(self.role, rate)


CLIPS: Final[Mapping[str, Clip]] = MappingProxyType(
    {
        "client": Clip(role="client", voice="en-us"),
        "gateway": Clip(role="gateway", voice="en+f3"),
    }
)


def clip_path(role: str, rate: int) -> Path:
    """Path of the WAV that ``role`` ("client" or "gateway") sends, at ``rate`` (8000 or 16000 Hz)."""
    if role not in CLIPS:
        raise ValueError(f"unknown clip role {role!r}: expected one of {sorted(CLIPS)}")
    if rate not in RATES:
        raise ValueError(f"no {role} clip at {rate!r} Hz: expected one of {list(RATES)}")
    return _DIR / f"{role}-{rate // 1000}k.wav"


def load_clip(role: str, rate: int) -> npt.NDArray[np.int16]:
    """Samples of the ``role`` clip at ``rate`` Hz: mono int16 (native byte order). A ``role`` that is a
    path prefix names a user's reference prepared for the run (``PREFIX-8k.wav``, ``PREFIX-16k.wav``)."""
    if "/" in role:
        if rate not in RATES:
            raise ValueError(f"no clip at {rate!r} Hz: expected one of {list(RATES)}")
        path = Path(f"{role}-{rate // 1000}k.wav")
    else:
        path = clip_path(role, rate)
    with wave.open(str(path), "rb") as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, rate):
            raise ValueError(f"{path.name}: expected mono 16-bit {rate} Hz, got {w.getparams()}")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
