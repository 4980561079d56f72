"""testbed.codecs: one registry that the scenario, the endpoints and scoring agree on."""

from __future__ import annotations

from typing import get_args

import pytest

from testbed import codecs
from testbed.codecs import CODECS, EMODEL_PARAMS, CodecName, UnknownCodecError, codec, emodel_params
from testbed.errors import InputError
from testbed.scenario.model import CallSpec


def test_the_scenario_accepts_exactly_the_registry():
    assert set(get_args(CodecName)) == set(CODECS)
    for name in CODECS:
        assert CallSpec.model_validate({"codec": name}).codec == name
    with pytest.raises(ValueError, match="'opus', 'pcmu', 'pcma' or 'g722'"):
        CallSpec.model_validate({"codec": "g729"})


@pytest.mark.parametrize(
    "name, mime, clock, audio, clip, wideband, ticks",
    [
        ("opus", "audio/opus", 48000, 16000, 16000, True, 960),
        ("pcmu", "audio/PCMU", 8000, 8000, 8000, False, 160),
        ("pcma", "audio/PCMA", 8000, 8000, 8000, False, 160),
        ("g722", "audio/G722", 8000, 16000, 16000, True, 160),  # RFC 3551: 8 kHz clock, 16 kHz audio
    ],
)
def test_wire_and_audio_facts(name, mime, clock, audio, clip, wideband, ticks):
    c = codec(name)
    assert (c.mime, c.clock_rate, c.audio_rate, c.clip_rate, c.wideband, c.frame_ticks) == (
        mime,
        clock,
        audio,
        clip,
        wideband,
        ticks,
    )


def test_every_call_codec_has_emodel_values_on_its_own_scale():
    for c in CODECS.values():
        assert c.emodel is EMODEL_PARAMS[c.emodel.name]
        assert emodel_params(c.name) is c.emodel is emodel_params(c)
        assert c.clip_rate == (16000 if c.wideband else 8000)  # PESQ's wideband or narrowband mode
        assert c.concealment


def test_lookups_are_case_insensitive_and_objects_pass_through():
    assert codec("OPUS") is codec(" opus ") is CODECS["opus"] is codec(CODECS["opus"])
    assert emodel_params(EMODEL_PARAMS["g729a"]) is emodel_params("G729") is EMODEL_PARAMS["g729a"]


def test_unknown_names_say_what_is_known():
    with pytest.raises(UnknownCodecError, match="speex.*g722.*opus.*pcma.*pcmu") as err:
        codec("speex")
    assert isinstance(err.value, InputError) and isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    with pytest.raises(UnknownCodecError, match="g711-plc"):
        emodel_params("g729x")
    assert codecs.known_emodel_names() == sorted(codecs.known_emodel_names())
    assert set(CODECS) <= set(codecs.known_emodel_names())
