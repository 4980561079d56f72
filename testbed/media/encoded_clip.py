"""A reference clip encoded once per codec (and Opus settings) and process, sent as ready-made 20 ms
payloads.

Encoding once keeps a call's CPU cost to packet handling, so one 2-core machine carries many
concurrent calls. G.711 and G.722 are aiortc's own encoders. Opus is encoded as browsers send it
(libopus in VoIP mode, mono, 32 kbit/s, in-band FEC provisioned for the loss the scenario expects;
``scenario.media.OpusSpec``), not with aiortc's encoder (96 kbit/s stereo, no FEC), so the bytes on the
wire and their loss behaviour are a dialer's.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterator
from typing import Any

import numpy as np
from aiortc import RTCRtpCodecCapability, RTCRtpCodecParameters, RTCRtpSender
from aiortc.codecs import get_encoder
from av import AudioFrame

from testbed.codecs import FRAME_S
from testbed.codecs import codec as codec_registry
from testbed.media.clips import load_clip

CLIP_RATE = 16000  # the clips' rate; aiortc's encoders resample to the codec's own rate


def clip_frames(samples: np.ndarray, rate: int = CLIP_RATE) -> Iterator[AudioFrame]:
    """The clip as 20 ms audio frames (the last one padded with the clip's start, as the loop goes on)."""
    size = int(rate * FRAME_S)
    count = -(-len(samples) // size)
    padded = np.concatenate([samples, samples[: count * size - len(samples)]]).astype(np.int16)
    for index in range(count):
        frame = AudioFrame(format="s16", layout="mono", samples=size)
        frame.planes[0].update(padded[index * size : (index + 1) * size].tobytes())
        frame.sample_rate = rate
        frame.pts = index * size
        frame.time_base = fractions.Fraction(1, rate)
        yield frame


def aiortc_capability(codec: str) -> RTCRtpCodecCapability:
    """aiortc's own description of a registry codec (its clock rate and channels as aiortc sends it)."""
    mime = codec_registry(codec).mime
    return next(c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == mime)


OpusSettings = tuple[int, bool, int]  # bitrate (bit/s), in-band FEC, expected loss (%)
BROWSER_OPUS: OpusSettings = (32_000, True, 0)  # scenario.media.OpusSpec's defaults on a clean path


def opus_settings(value: Any) -> OpusSettings | None:
    """A leg's Opus settings as the encoder takes them (None: the browser-like default)."""
    if not value:
        return None
    bitrate, fec, loss = value
    return int(bitrate), bool(fec), int(loss)


_ENCODED: dict[tuple[str, str, OpusSettings | None], list[bytes]] = {}


def encoded_clip(codec: str, clip_role: str, opus: OpusSettings | None = None) -> list[bytes]:
    """The ``clip_role`` clip (client or gateway) encoded for ``codec``, 20 ms per payload; Opus with
    ``opus`` settings (default: as browsers send it)."""
    settings = (opus or BROWSER_OPUS) if codec == "opus" else None
    key = (codec, clip_role, settings)
    if key not in _ENCODED:
        if settings is not None:
            _ENCODED[key] = opus_payloads(load_clip(clip_role, CLIP_RATE), settings)
        else:
            _ENCODED[key] = _aiortc_payloads(codec, clip_role)
    return _ENCODED[key]


def opus_payloads(samples: np.ndarray, settings: OpusSettings) -> list[bytes]:
    import opuslib_next

    bitrate, fec, expected_loss = settings
    encoder = opuslib_next.Encoder(CLIP_RATE, 1, "voip")
    encoder.bitrate = bitrate
    encoder.inband_fec = int(fec)
    encoder.packet_loss_perc = expected_loss
    size = int(CLIP_RATE * FRAME_S)
    count = -(-len(samples) // size)
    padded = np.concatenate([samples, samples[: count * size - len(samples)]]).astype(np.int16)
    return [bytes(encoder.encode(padded[i * size : (i + 1) * size].tobytes(), size)) for i in range(count)]


def _aiortc_payloads(codec: str, clip_role: str) -> list[bytes]:
    capability = aiortc_capability(codec)
    encoder = get_encoder(
        RTCRtpCodecParameters(
            mimeType=capability.mimeType,
            clockRate=capability.clockRate,
            channels=capability.channels,
            payloadType=0,
        )
    )
    payloads = []
    for frame in clip_frames(load_clip(clip_role, CLIP_RATE)):
        encoded, _ = encoder.encode(frame)
        payloads.extend(encoded)
    return payloads
