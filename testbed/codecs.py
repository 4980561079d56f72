"""The codec registry: everything the testbed knows about a call codec, in one place.

A scenario's ``codec:`` names an entry of :data:`CODECS` (the scenario validates against it), the call
endpoints read its MIME type, and scoring reads its RTP clock, audio rates, decoder and E-model values.

E-model values (:class:`EModelParams`, table :data:`EMODEL_PARAMS`): equipment impairment (Ie or Ie,wb),
packet-loss robustness (Bpl) and the delays a codec adds to the mouth-to-ear path. Every entry names
where its numbers come from (``source``). Where ITU-T publishes no value, or where the published value
could not be checked against the Recommendation's own text, the entry says so (``assumption=True``) and
``note`` gives the rationale; scores from such an entry are estimates resting on that assumption.

Narrowband values are on the G.107 rating scale (R up to about 93), wideband values on the G.107.1 scale
(R up to 129). The scales are not interchangeable (:func:`testbed.scoring.emodel.call_inputs` refuses
to mix them).

Delays (see :func:`testbed.scoring.emodel.absolute_delay_ms`):

- ``packetization_ms``: audio carried in one RTP packet (the ``ptime``). It covers frame accumulation
  whenever a packet holds whole frames (frame <= ptime), so the frame length is not counted again.
- ``codec_delay_ms``: algorithmic delay beyond frame accumulation: look-ahead plus filter banks
  (G.711: one sample, 0.125 ms; G.722: QMF analysis+synthesis, about 1.5 ms; G.729: 5 ms look-ahead;
  Opus: 6.5 ms look-ahead in libopus' VoIP/audio modes, RFC 6716). With a 20 ms ptime, Opus' 20 ms frame
  *is* the packetization delay, so only the look-ahead is added. ``frame_ms`` is kept for reference.

Call codecs map onto E-model entries: ``pcmu`` and ``pcma`` are G.711 *with* packet-loss concealment
(``g711-plc``), because the playout model conceals lost frames; ``opus`` and ``g722`` map to themselves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, get_args

from testbed.errors import InputError

__all__ = [
    "CODECS",
    "EMODEL_PARAMS",
    "FRAME_S",
    "Codec",
    "CodecName",
    "DecoderKind",
    "EModelParams",
    "UnknownCodecError",
    "codec",
    "emodel_params",
    "known_emodel_names",
]

FRAME_S: Final = 0.020  # every call codec sends 20 ms of audio per RTP packet

# ---------------------------------------------------------------- E-model values


@dataclass(frozen=True)
class EModelParams:
    """E-model parameters of one codec configuration (codec + packetization + concealment)."""

    name: str
    wideband: bool  # True: ie/bpl are Ie,wb/Bpl on the G.107.1 (R up to 129) scale
    ie: float  # equipment impairment factor Ie (narrowband) or Ie,wb (wideband), no loss
    bpl: float  # packet-loss robustness factor Bpl for random loss
    packetization_ms: float  # audio per RTP packet (ptime)
    frame_ms: float  # codec frame length (for reference; covered by packetization_ms)
    codec_delay_ms: float  # algorithmic delay beyond frame accumulation (look-ahead, filter banks)
    source: str  # where ie and bpl come from
    assumption: bool  # True when a value is not an ITU-T published value we could verify
    note: str = ""  # rationale, caveats

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_G113_APP_I = (
    "ITU-T G.113 (11/2007) Appendix I: Ie from the table of provisional planning values of Ie "
    "(Table I.1), Bpl from the table of packet-loss robustness factors (Table I.3)"
)

EMODEL_PARAMS: Final[dict[str, EModelParams]] = {
    c.name: c
    for c in (
        EModelParams(
            name="g711",
            wideband=False,
            ie=0.0,
            bpl=4.3,
            packetization_ms=20.0,
            frame_ms=0.125,
            codec_delay_ms=0.125,
            source=_G113_APP_I + ": G.711 without packet-loss concealment",
            assumption=False,
            note="A receiver that plays silence (or nothing) for a lost packet. Not the testbed's default: its "
            "playout model conceals losses (see g711-plc).",
        ),
        EModelParams(
            name="g711-plc",
            wideband=False,
            ie=0.0,
            bpl=25.1,
            packetization_ms=20.0,
            frame_ms=0.125,
            codec_delay_ms=0.125,
            source=_G113_APP_I + ": G.711 with packet-loss concealment per G.711 Appendix I",
            assumption=False,
            note="Bpl 25.1 was measured with G.711 Appendix I concealment (pitch-waveform substitution). The "
            "testbed's playout model conceals by repetition; if that is cruder than Appendix I, this Bpl "
            "is somewhat optimistic. G.711 Appendix I itself adds 3.75 ms of delay, not counted here.",
        ),
        EModelParams(
            name="g729a",
            wideband=False,
            ie=11.0,
            bpl=19.0,
            packetization_ms=20.0,
            frame_ms=10.0,
            codec_delay_ms=5.0,
            source=_G113_APP_I + ": G.729A with VAD, 2 frames (20 ms) per packet",
            assumption=False,
            note="Not a testbed call codec (aiortc has no G.729); kept as a reference point.",
        ),
        EModelParams(
            name="g722",
            wideband=True,
            ie=13.0,
            bpl=25.1,
            packetization_ms=20.0,
            frame_ms=0.125,
            codec_delay_ms=1.5,
            source="Ie,wb 13: ITU-T G.113 Appendix IV (wideband equipment impairment factors), G.722 at "
            "64 kbit/s, quoted from memory and NOT checked against the Recommendation's text. "
            "Bpl 25.1: assumed, borrowed from G.711 with PLC (G.113 Appendix I)",
            assumption=True,
            note="We found no published wideband Bpl for G.722 we could verify. G.722 is a waveform (SB-ADPCM) "
            "codec concealed by the same kind of waveform substitution as G.711 in our playout model, "
            "hence G.711+PLC's Bpl; ADPCM decoder state mismatch after a loss makes real G.722 somewhat "
            "less robust, so loss scores for G.722 lean optimistic. codec_delay_ms: the 24-tap QMF "
            "analysis and synthesis filters (23 samples at 16 kHz, about 1.44 ms), rounded to 1.5 ms.",
        ),
        EModelParams(
            name="opus",
            wideband=True,
            ie=10.0,
            bpl=4.9,
            packetization_ms=20.0,
            frame_ms=20.0,
            codec_delay_ms=6.5,
            source="Assumption (no ITU-T value exists for Opus): scored like the best published AMR-WB mode, "
            "G.722.2 at 23.85 kbit/s, diotic listening: Ie,wb 10 (ITU-T G.113 (09/2024) Appendix IV "
            "Table IV.3) and Bpl 4.9 (Table IV.4), values as transcribed by a public implementation "
            "(sipnab, src rtp/emodel_wb.rs), not checked against the Recommendation's text",
            assumption=True,
            note="ITU-T publishes no Ie,wb or Bpl for Opus. Rationale: AMR-WB is the only codec with both a "
            "wideband Ie and a wideband Bpl in G.113 Appendix IV; its best mode is a stand-in for the "
            "32 kbit/s mono, 20 ms Opus the testbed sends (as browsers do; libopus, application=voip), "
            "which IETF listening tests rate at least as good as AMR-WB 23.85 kbit/s (draft-ietf-codec-results, "
            "'Summary of Opus listening test results'). Diotic because WebRTC softphones are used with "
            "headsets or loudspeakers. Conservative in both terms: clean-channel Opus may deserve a lower "
            "Ie,wb, and libopus concealment is probably more robust than Bpl 4.9 implies. In-band FEC is not "
            "in Bpl: the playout model takes the frames it recovers out of Ppl instead. Look-ahead 6.5 ms: "
            "libopus in VoIP/audio mode (RFC 6716).",
        ),
    )
}

# ---------------------------------------------------------------- call codecs

CodecName = Literal["opus", "pcmu", "pcma", "g722"]  # what a scenario's ``codec:`` accepts
DecoderKind = Literal["opus", "ulaw", "alaw", "g722"]


@dataclass(frozen=True)
class Codec:
    """One call codec: how it goes on the wire, how it is decoded, and how it is scored."""

    name: CodecName
    mime: str  # the RTP payload format's MIME type, as WebRTC's SDP names it
    clock_rate: int  # RTP timestamp clock
    audio_rate: int  # the decoder's native output rate (Opus: the default decode rate; 8-48 kHz possible)
    clip_rate: int  # the reference clip scoring compares with (PESQ: 16 kHz wideband, 8 kHz narrowband)
    decoder: DecoderKind  # how testbed.scoring.decode turns payloads into audio
    concealment: str  # what stands in for a lost frame (see testbed.scoring.decode)
    emodel: EModelParams
    frame_s: float = FRAME_S  # audio per RTP packet

    @property
    def wideband(self) -> bool:
        return self.emodel.wideband

    @property
    def frame_ticks(self) -> int:
        """RTP timestamp increment of one packet's audio."""
        return round(self.clock_rate * self.frame_s)


_LIBOPUS_PLC = "libopus packet loss concealment"
_PITCH = "pitch repetition (simplified G.711 Appendix I)"

CODECS: Final[dict[str, Codec]] = {
    c.name: c
    for c in (
        Codec("opus", "audio/opus", 48000, 16000, 16000, "opus", _LIBOPUS_PLC, EMODEL_PARAMS["opus"]),
        Codec("pcmu", "audio/PCMU", 8000, 8000, 8000, "ulaw", _PITCH, EMODEL_PARAMS["g711-plc"]),
        Codec("pcma", "audio/PCMA", 8000, 8000, 8000, "alaw", _PITCH, EMODEL_PARAMS["g711-plc"]),
        # RFC 3551: G.722's RTP clock is 8000 Hz although it samples at 16 kHz
        Codec("g722", "audio/G722", 8000, 16000, 16000, "g722", _PITCH, EMODEL_PARAMS["g722"]),
    )
}
if set(CODECS) != set(get_args(CodecName)):  # the scenario's Literal and the table must name the same codecs
    raise AssertionError(f"CodecName {get_args(CodecName)} and CODECS {sorted(CODECS)} disagree")

# RTP payload types as the light endpoint sends them: RFC 3551's static ones, and 111 for Opus, the
# dynamic type browsers offer it under
PAYLOAD_TYPES: Final[dict[str, int]] = {"pcmu": 0, "pcma": 8, "g722": 9, "opus": 111}

# names the E-model lookup accepts besides its own table's (call codec names first)
_EMODEL_ALIASES: Final[dict[str, str]] = {
    **{name: c.emodel.name for name, c in CODECS.items()},
    "g711-noplc": "g711",
    "g711a": "g711-plc",
    "g711u": "g711-plc",
    "g729": "g729a",
    "g729ab": "g729a",
}


class UnknownCodecError(InputError, KeyError, ValueError):
    """A codec name the registry does not know; the message lists the known names.

    A ``KeyError`` for lookups and a ``ValueError`` for argument checks, as callers of either kind expect.
    """

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


def codec(name: str | Codec) -> Codec:
    """The call codec named ``name`` (case-insensitive); a :class:`Codec` passes through."""
    if isinstance(name, Codec):
        return name
    try:
        return CODECS[str(name).strip().lower()]
    except KeyError:
        raise UnknownCodecError(f"unknown codec {name!r}: expected one of {sorted(CODECS)}") from None


def known_emodel_names() -> list[str]:
    """Every name :func:`emodel_params` accepts (table entries and aliases), sorted."""
    return sorted(set(EMODEL_PARAMS) | set(_EMODEL_ALIASES))


def emodel_params(name: str | EModelParams | Codec) -> EModelParams:
    """The E-model parameters for a codec (a call codec, an E-model entry or an alias; case-insensitive)."""
    if isinstance(name, EModelParams):
        return name
    if isinstance(name, Codec):
        return name.emodel
    key = str(name).strip().lower()
    try:
        return EMODEL_PARAMS[_EMODEL_ALIASES.get(key, key)]
    except KeyError:
        raise UnknownCodecError(
            f"unknown codec {name!r} for E-model scoring; known: {', '.join(known_emodel_names())}"
        ) from None
