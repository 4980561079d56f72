"""ITU-T P.59 conversations: the pattern's statistics, the gated speech, and what Opus sends for it."""

from __future__ import annotations

import numpy as np

from testbed.media.clips import load_clip
from testbed.media.conversation import FRAME_S, conversation, speak
from testbed.media.encoded_clip import opus_payloads
from testbed.scenario.media import OpusSpec


def test_an_hour_of_conversation_has_p59s_shares():
    shares = conversation(3600, "long").activity()
    assert 0.37 < shares["caller"] < 0.47 and 0.37 < shares["callee"] < 0.47
    assert 0.05 < shares["double_talk"] < 0.10
    assert 0.19 < shares["mutual_silence"] < 0.26


def test_the_same_call_gets_the_same_conversation_and_others_differ():
    a, b, c = conversation(30, "rep-1"), conversation(30, "rep-1"), conversation(30, "rep-2")
    assert np.array_equal(a.caller, b.caller) and np.array_equal(a.callee, b.callee)
    assert not np.array_equal(a.caller, c.caller)
    assert a.frames == round(30 / FRAME_S) and a.caller[0]  # the rep speaks first


def test_speech_follows_the_talk_spurts_in_order():
    clip = load_clip("client", 8000)
    talks = conversation(20, "order")
    audio = speak(clip, 8000, talks.caller)
    frames = audio.reshape(-1, 160)
    assert audio.size == talks.frames * 160
    assert not frames[~talks.caller].any()  # silent whenever the caller does not talk
    spoken = frames[talks.caller].reshape(-1)
    inner = slice(40, 40 + 160 * 5)  # the first spurt, past its fade-in, is the clip's start
    assert np.array_equal(spoken[inner], clip[inner])


def test_silence_goes_on_the_wire_as_small_opus_frames():
    talks = conversation(20, "wire")
    audio = speak(load_clip("client", 16000), 16000, talks.caller)
    payloads = opus_payloads(audio, OpusSpec().key())
    sizes = np.array([len(p) for p in payloads])
    quiet = ~talks.caller[: sizes.size]
    assert np.median(sizes[quiet]) < 10 < np.median(sizes[talks.caller[: sizes.size]])
    assert sizes.mean() < 0.7 * np.mean([len(p) for p in opus_payloads(load_clip("client", 16000), OpusSpec().key())])
