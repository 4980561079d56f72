"""A reference clip encoded once per codec and process, sent as ready-made 20 ms payloads.

Encoding once keeps a call's CPU cost to packet handling, so one 2-core machine carries many
concurrent calls; the bytes on the wire are what aiortc's encoder would have sent.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterator

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


_ENCODED: dict[tuple[str, str], list[bytes]] = {}


def encoded_clip(codec: str, clip_role: str) -> list[bytes]:
    """The ``clip_role`` clip (client or gateway) encoded with aiortc's own encoder, 20 ms per payload."""
    key = (codec, clip_role)
    if key not in _ENCODED:
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
        _ENCODED[key] = payloads
    return _ENCODED[key]
