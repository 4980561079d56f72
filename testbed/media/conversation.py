"""Calls that talk like people: ITU-T P.59's artificial conversation, who talks when.

A continuous clip keeps both directions talking all the time, which overstates a call's bandwidth and
lines the peaks of a group's calls up. P.59 models a conversation as four states with exponentially
distributed durations: one side talks (mean 0.854 s), both talk (double talk, 0.226 s), neither talks
(mutual silence, 0.456 s). After single talk comes double talk (probability 0.4) or mutual silence
(0.6); after either of those, each side is as likely to hold the floor. That gives each side about 40 %
activity, 7 % double talk and 22 % mutual silence (``Conversation`` reports what a pattern really gave).

A side's audio is its clip's speech during its talk spurts (each spurt goes on where the last one
stopped, so the words stay in order) and digital silence in between; the sender encodes that as it
encodes anything, so silence goes on the wire as the codec sends it (Opus: frames of a few bytes,
browsers leave DTX off; G.711: full-size frames). Pure functions: the harness writes the result as the
call's reference WAVs, and every endpoint kind sends them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["FRAME_S", "Conversation", "conversation", "speak"]

FRAME_S = 0.02
SINGLE_TALK_S = 0.854
DOUBLE_TALK_S = 0.226
MUTUAL_SILENCE_S = 0.456
SINGLE_TO_DOUBLE = 0.4
RAMP_S = 0.005  # fade in and out at spurt edges, so a gate never clicks

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class Conversation:
    """Who talks in each 20 ms frame of the call."""

    caller: BoolArray
    callee: BoolArray

    @property
    def frames(self) -> int:
        return int(self.caller.size)

    def activity(self) -> dict[str, float]:
        """Each side's share of talking frames, and the shares of double talk and mutual silence."""
        n = max(self.frames, 1)
        return {
            "caller": round(float(self.caller.sum()) / n, 3),
            "callee": round(float(self.callee.sum()) / n, 3),
            "double_talk": round(float((self.caller & self.callee).sum()) / n, 3),
            "mutual_silence": round(float((~self.caller & ~self.callee).sum()) / n, 3),
        }


def _rng(seed: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "little"))


def conversation(seconds: float, seed: str) -> Conversation:
    """A P.59 conversation of ``seconds``, the same for the same ``seed`` (a call's id): starts with the
    caller talking, as a dialer's rep does when the customer answers."""
    rng = _rng(seed)
    frames = max(int(round(seconds / FRAME_S)), 1)
    caller = np.zeros(frames, dtype=bool)
    callee = np.zeros(frames, dtype=bool)
    state, floor, at = "single", "caller", 0
    while at < frames:
        mean = {"single": SINGLE_TALK_S, "double": DOUBLE_TALK_S, "mutual": MUTUAL_SILENCE_S}[state]
        length = max(int(round(rng.exponential(mean) / FRAME_S)), 1)
        end = min(at + length, frames)
        if state in ("single", "double"):
            (caller if floor == "caller" or state == "double" else callee)[at:end] = True
            if state == "double":
                callee[at:end] = True
        at = end
        if state == "single":
            state = "double" if rng.random() < SINGLE_TO_DOUBLE else "mutual"
        else:
            state, floor = "single", ("caller" if rng.random() < 0.5 else "callee")
    return Conversation(caller, callee)


def speak(clip: npt.NDArray[np.int16], rate: int, talking: BoolArray) -> npt.NDArray[np.int16]:
    """The side's audio at ``rate``: the clip's samples, in order and looping, during talk frames;
    silence elsewhere; short fades at each spurt's edges."""
    step = int(round(rate * FRAME_S))
    out = np.zeros(talking.size * step, dtype=np.float64)
    source = clip.astype(np.float64)
    ramp = int(rate * RAMP_S)
    fade = np.sin(np.linspace(0.0, np.pi / 2, ramp)) ** 2 if ramp else np.zeros(0)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], talking.astype(np.int8), [0]])))
    position = 0
    for begin, end in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        count = (end - begin) * step
        index = (position + np.arange(count)) % source.size
        spurt = source[index]
        if ramp and count >= 2 * ramp:
            spurt[:ramp] *= fade
            spurt[-ramp:] *= fade[::-1]
        out[begin * step : end * step] = spurt
        position = (position + count) % source.size
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)
