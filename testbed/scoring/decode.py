"""Decode one direction's RTP payloads to audio, concealing the frames the listener did not get.

Concealment is what a real phone does, so the scored audio sounds like what a listener heard:

- Opus: libopus's own packet loss concealment (``opuslib_next`` on the system ``libopus0``): decoding
  "no data" for a lost frame. PyAV's libopus decoder cannot do this (an empty packet means end of
  stream). In-band FEC is not used: aiortc's encoder does not send it.
- G.711 (PCMU/PCMA): decoded with numpy tables (ITU-T G.711). G.711 has no codec PLC; ITU-T G.711
  Appendix I is the reference concealment. Here a simplified Appendix I: repeat the last pitch period
  (found by autocorrelation in 5-15 ms) with a smoothed wrap, full level for the first 10 ms of an
  erasure, then fade 20 % per 10 ms to silence at 60 ms; on the first good frame the concealment is
  cross-faded into the decoded audio over 5 ms. (Appendix I also delays output by 3.75 ms and adds
  history periods for long erasures; those are left out.)
- G.722: decoded by PyAV (FFmpeg's g722 decoder); the same pitch-repetition concealment at 16 kHz
  (G.722 Appendices III/IV define codec PLCs FFmpeg does not have). The ADPCM state simply continues
  with the next good packet.

``concealment="silence"`` zero-fills lost frames instead, for comparison.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from testbed.codecs import FRAME_S, codec
from testbed.errors import CapabilityError

__all__ = [
    "Concealment",
    "FrameDecoder",
    "decode_frames",
    "make_decoder",
    "alaw_decode",
    "ulaw_decode",
]

Concealment = Literal["plc", "silence"]
Audio = npt.NDArray[np.int16]


# --------------------------------------------------------------------------- G.711 (numpy tables)


def _ulaw_table() -> Audio:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _alaw_table() -> Audio:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, np.where(seg == 1, t + 0x108, (t + 0x108) << np.maximum(seg - 1, 0)))
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW = _ulaw_table()
_ALAW = _alaw_table()


def ulaw_decode(payload: bytes) -> Audio:
    """G.711 mu-law bytes to int16 samples."""
    return _ULAW[np.frombuffer(payload, dtype=np.uint8)]


def alaw_decode(payload: bytes) -> Audio:
    """G.711 A-law bytes to int16 samples."""
    return _ALAW[np.frombuffer(payload, dtype=np.uint8)]


# --------------------------------------------------------------------------- decoders


class FrameDecoder(Protocol):
    """Decodes one 20 ms frame at a time, in playout order; ``conceal`` stands in for a missing one."""

    rate: int
    frame_samples: int

    def decode(self, payload: bytes) -> Audio: ...

    def conceal(self) -> Audio: ...


def _fit(samples: npt.NDArray[np.int16], n: int) -> Audio:
    """Exactly ``n`` samples: a payload of another duration must not shift the timeline."""
    if samples.size == n:
        return samples
    if samples.size > n:
        return samples[:n]
    return np.concatenate([samples, np.zeros(n - samples.size, dtype=np.int16)])


def _opuslib() -> Any:
    """opuslib_next, imported on first use: only Opus needs it (and the system's libopus)."""
    try:
        import opuslib_next
    except Exception as error:  # ImportError, or its plain Exception when libopus is missing
        raise CapabilityError(
            f"Opus decoding needs libopus and opuslib-next ({error}): run `make setup`, or "
            "`apt-get install libopus0` and `pip install opuslib-next`"
        ) from error
    return opuslib_next


class OpusFrameDecoder:
    """libopus via opuslib_next, mono at ``rate``; libopus PLC for lost frames."""

    def __init__(self, rate: int = 16000, concealment: Concealment = "plc"):
        opuslib_next = _opuslib()
        if rate not in (8000, 12000, 16000, 24000, 48000):
            raise ValueError(f"Opus decodes at 8000, 12000, 16000, 24000 or 48000 Hz, not {rate}")
        self._decoder = opuslib_next.Decoder(rate, 1)
        self._error = opuslib_next.OpusError
        self.rate = rate
        self.frame_samples = int(rate * FRAME_S)
        self.concealment = concealment

    def decode(self, payload: bytes) -> Audio:
        try:
            pcm = self._decoder.decode(bytes(payload), self.frame_samples * 6)  # up to 120 ms per packet
        except self._error:
            return self.conceal()  # a corrupt payload is a lost frame to the listener
        return _fit(np.frombuffer(pcm, dtype=np.int16), self.frame_samples)

    def conceal(self) -> Audio:
        if self.concealment == "silence":
            return np.zeros(self.frame_samples, dtype=np.int16)
        return _fit(np.frombuffer(self._decoder.decode(b"", self.frame_samples), dtype=np.int16), self.frame_samples)

    def recover(self, next_payload: bytes) -> Audio:
        """The lost frame from the in-band FEC (LBRR) of the packet after it, as a receiver does when
        that packet is in its buffer in time; libopus conceals when the packet carries no FEC."""
        try:
            pcm = self._decoder.decode(bytes(next_payload), self.frame_samples, decode_fec=True)
        except self._error:
            return self.conceal()
        return _fit(np.frombuffer(pcm, dtype=np.int16), self.frame_samples)


class PitchRepetition:
    """Simplified G.711 Appendix I concealment (see the module docstring), at any sample rate."""

    def __init__(self, rate: int):
        self.rate = rate
        self.history = np.zeros(int(0.045 * rate), dtype=np.float64)  # 45 ms of past output
        self.erased = 0  # samples concealed in the current erasure
        self.period: npt.NDArray[np.float64] | None = None
        self.phase = 0

    def _pitch_buffer(self) -> npt.NDArray[np.float64]:
        h = self.history
        lo, hi, win = int(0.005 * self.rate), int(0.015 * self.rate), int(0.020 * self.rate)
        target = h[-win:]
        best, best_score = hi, -np.inf
        for lag in range(lo, hi + 1):
            cand = h[-win - lag : -lag]
            energy = float(cand @ cand)
            score = float(target @ cand) / np.sqrt(energy) if energy > 0 else -np.inf
            if score > best_score:
                best, best_score = lag, score
        period = h[-best:].copy()
        overlap = max(1, best // 4)  # smooth the wrap from the period's end back to its start
        ramp = np.linspace(0.0, 1.0, overlap)
        period[-overlap:] = period[-overlap:] * (1 - ramp) + h[-best - overlap : -best] * ramp
        return period

    def _continue(self, n: int) -> npt.NDArray[np.float64]:
        assert self.period is not None
        idx = (self.phase + np.arange(n)) % self.period.size
        self.phase = int((self.phase + n) % self.period.size)
        t = (self.erased + np.arange(n)) / self.rate
        gain = np.clip(1.0 - (t - 0.010) / 0.050, 0.0, 1.0)  # 1 until 10 ms, -20 %/10 ms, 0 from 60 ms
        return self.period[idx] * gain

    def conceal(self, n: int) -> Audio:
        if self.erased == 0:
            self.period, self.phase = self._pitch_buffer(), 0
        out = self._continue(n)
        self.erased += n
        self._remember(out)
        return np.round(out).astype(np.int16)

    def good(self, frame: Audio) -> Audio:
        out = frame.astype(np.float64)
        if self.erased:
            fade = min(int(0.005 * self.rate), out.size)
            tail = self._continue(fade)
            ramp = np.linspace(0.0, 1.0, fade)
            out[:fade] = tail * (1 - ramp) + out[:fade] * ramp
            self.erased = 0
        self._remember(out)
        return np.clip(np.round(out), -32768, 32767).astype(np.int16)

    def _remember(self, samples: npt.NDArray[np.float64]) -> None:
        self.history = np.concatenate([self.history, samples])[-self.history.size :]


class TableFrameDecoder:
    """Stateless or FFmpeg decoders without PLC (G.711, G.722), with pitch-repetition concealment."""

    def __init__(self, name: str, concealment: Concealment = "plc"):
        info = codec(name)
        self.rate = info.audio_rate
        self.frame_samples = int(self.rate * FRAME_S)
        self.concealment = concealment
        self._plc = PitchRepetition(self.rate)
        if info.decoder == "ulaw":
            self._decode = ulaw_decode
        elif info.decoder == "alaw":
            self._decode = alaw_decode
        else:
            from av import CodecContext, Packet

            ctx = CodecContext.create("g722", "r")
            ctx.format, ctx.layout, ctx.sample_rate = "s16", "mono", 16000

            def g722(payload: bytes) -> Audio:
                frames = ctx.decode(Packet(payload))
                if not frames:
                    return np.zeros(0, dtype=np.int16)
                return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)

            self._decode = g722

    def decode(self, payload: bytes) -> Audio:
        frame = _fit(self._decode(bytes(payload)), self.frame_samples)
        return frame if self.concealment == "silence" else self._plc.good(frame)

    def conceal(self) -> Audio:
        if self.concealment == "silence":
            return np.zeros(self.frame_samples, dtype=np.int16)
        return self._plc.conceal(self.frame_samples)


def make_decoder(name: str, rate: int | None = None, concealment: Concealment = "plc") -> FrameDecoder:
    """A fresh decoder for one stream. ``rate`` only applies to Opus (G.711: 8 kHz, G.722: 16 kHz)."""
    info = codec(name)
    if info.decoder == "opus":
        return OpusFrameDecoder(rate or info.audio_rate, concealment)
    if rate not in (None, info.audio_rate):
        raise ValueError(f"{info.name} decodes at {info.audio_rate} Hz only, not {rate}: resample afterwards")
    return TableFrameDecoder(info.name, concealment)


def decode_frames(
    name: str,
    frames: Sequence[bytes | None],
    rate: int | None = None,
    concealment: Concealment = "plc",
    fec: Mapping[int, bytes] | None = None,
) -> Audio:
    """Decode frames in playout order (``None`` = not there in time, concealed) into one int16 array.
    ``fec``: frame index -> the next packet's payload, whose in-band FEC recovers that missing frame
    (Opus only)."""
    decoder = make_decoder(name, rate, concealment)
    recover = getattr(decoder, "recover", None) if fec else None
    out = []
    for index, payload in enumerate(frames):
        if payload is not None:
            out.append(decoder.decode(payload))
        elif recover is not None and fec is not None and index in fec:
            out.append(recover(fec[index]))
        else:
            out.append(decoder.conceal())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)
