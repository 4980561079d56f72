"""Codec parameters for the E-model: equipment impairment (Ie or Ie,wb), packet-loss robustness (Bpl) and
the delays a codec adds to the mouth-to-ear path.

Every entry names where its numbers come from (``source``). Where ITU-T publishes no value, or where we
could not check the published value against the Recommendation's own text, the entry says so
(``assumption=True``) and ``note`` gives the rationale. Scores from such an entry are estimates resting on
that assumption, and a report should say so.

Narrowband values (Ie, Bpl) are on the G.107 rating scale (R up to about 93 at default values); wideband
values (Ie,wb, Bpl) are on the G.107.1 scale (R up to 129). The two scales are not interchangeable: never put
a narrowband Ie into the wideband model or the other way round (:func:`testbed.scoring.emodel.call_inputs`
refuses to).

Delays (see :func:`testbed.scoring.emodel.absolute_delay_ms`):

- ``packetization_ms``: audio carried in one RTP packet (the ``ptime``). A sample at the start of a packet
  waits this long before the packet can leave; it covers frame accumulation whenever a packet holds whole
  frames (frame <= ptime), so the frame length is not counted a second time in ``codec_delay_ms``.
- ``codec_delay_ms``: the codec's algorithmic delay beyond frame accumulation: encoder look-ahead plus
  filter-bank delay (G.711: one sample, 0.125 ms; G.722: QMF analysis+synthesis, about 1.5 ms; G.729: 5 ms
  look-ahead; Opus: 6.5 ms look-ahead in libopus' VoIP/audio modes, RFC 6716). ``frame_ms`` is kept for
  reference. (The issue listed Opus' codec delay as "20 ms frame + 6.5 ms look-ahead"; with a 20 ms ptime
  the 20 ms frame *is* the packetization delay, so adding both would count it twice.)

Testbed codec names (``scenario`` ``codec:``) map onto entries: ``pcmu`` and ``pcma`` are G.711 *with*
packet-loss concealment (``g711-plc``), because the testbed's playout model conceals lost frames; ``opus``
and ``g722`` map to themselves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from testbed.errors import InputError

__all__ = ["CODECS", "TESTBED_CODEC_NAMES", "CodecParams", "UnknownCodecError", "codec", "known_codecs"]


@dataclass(frozen=True)
class CodecParams:
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

CODECS: dict[str, CodecParams] = {
    c.name: c
    for c in (
        CodecParams(
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
        CodecParams(
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
        CodecParams(
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
        CodecParams(
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
        CodecParams(
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
            "wideband Ie and a wideband Bpl in G.113 Appendix IV; its best mode is a conservative stand-in "
            "for the 96 kbit/s, 20 ms Opus the testbed sends (aiortc's encoder, application=voip), which "
            "IETF listening tests rate at least as good as AMR-WB 23.85 kbit/s (draft-ietf-codec-results, "
            "'Summary of Opus listening test results'). Diotic because WebRTC softphones are used with "
            "headsets or loudspeakers. Conservative in both terms: clean-channel Opus may deserve a lower "
            "Ie,wb, and libopus concealment (no in-band FEC: aiortc does not enable it) is probably more "
            "robust than Bpl 4.9 implies. Look-ahead 6.5 ms: libopus in VoIP/audio mode (RFC 6716).",
        ),
    )
}

# the scenario's codec names -> table entries (pcmu/pcma: the playout model conceals, so G.711 with PLC)
TESTBED_CODEC_NAMES: dict[str, str] = {"opus": "opus", "pcmu": "g711-plc", "pcma": "g711-plc", "g722": "g722"}

_ALIASES: dict[str, str] = {
    **TESTBED_CODEC_NAMES,
    "g711-noplc": "g711",
    "g711a": "g711-plc",
    "g711u": "g711-plc",
    "g729": "g729a",
    "g729ab": "g729a",
}


class UnknownCodecError(InputError, KeyError):
    """A codec name that the scoring table does not know; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


def known_codecs() -> list[str]:
    """Every name :func:`codec` accepts (table entries and aliases), sorted."""
    return sorted(set(CODECS) | set(_ALIASES))


def codec(name: str | CodecParams) -> CodecParams:
    """The E-model parameters for a codec name (case-insensitive); a :class:`CodecParams` passes through."""
    if isinstance(name, CodecParams):
        return name
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    try:
        return CODECS[key]
    except KeyError:
        raise UnknownCodecError(
            f"unknown codec {name!r} for E-model scoring; known: {', '.join(known_codecs())}"
        ) from None
