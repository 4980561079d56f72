"""The report's MOS bands (Twilio's preflight callQuality) and its Listen section (players linked to the
run's own WAVs, relative to report.html)."""

from __future__ import annotations

import pytest

from testbed.report import html
from testbed.report.figures import mos_band
from testbed.report.listen import MAX_PER_VARIANT, listen_section
from testbed.results import CallScores
from tests.helpers.scores import run_result
from tests.unit.test_report import call


@pytest.mark.parametrize(
    "mos, band",
    [
        (4.5, "excellent"),
        (4.21, "excellent"),
        (4.2, "great"),
        (4.1, "great"),
        (4.09, "good"),
        (3.7, "good"),
        (3.69, "fair"),
        (3.1, "fair"),
        (3.09, "degraded"),
        (1.0, "degraded"),
    ],
)
def test_bands_follow_twilios_preflight(mos, band):
    assert mos_band(mos).name == band


def with_audio(scores: CallScores) -> CallScores:
    directions = {
        label: d.model_copy(
            update={
                "audio_file": f"audio/{scores.id}-{label.replace('->', '-to-')}.wav",
                "reference_file": "audio/reference-client-16k-0123abcd.wav",
            }
        )
        for label, d in scores.directions.items()
    }
    return scores.model_copy(update={"directions": directions})


def test_every_direction_with_audio_gets_a_player_and_its_reference_per_variant():
    result = run_result(
        {
            "fifo": [with_audio(call("call 1", 1.2, 2.0))],
            "ef-priority": [with_audio(call("call 1", 4.4, 4.3))],
        },
        [],
    )
    section = listen_section(result)
    assert section.count("<audio ") == 2 * 2 * 2  # 2 variants x 2 directions x (heard, reference)
    assert 'src="fifo/audio/call%201-client-to-gateway.wav"' in section  # relative, quoted
    assert 'src="ef-priority/audio/reference-client-16k-0123abcd.wav"' in section
    assert section.count("<h3>") == 2  # one table per direction, a row per variant
    assert "4.40 excellent" in section and "1.20 degraded" in section
    assert "<h2>Listen</h2>" in html.render(result)


def test_no_audio_no_section_and_many_calls_are_capped():
    assert listen_section(run_result({"fifo": [call("call", 1.2, 2.0)]}, [])) == ""
    many = [with_audio(call(f"c{i}", 4.0, 4.0)) for i in range(20)]
    section = listen_section(run_result({"v": many}, []))
    assert section.count("<tr><td>v</td>") == MAX_PER_VARIANT
    assert f"{MAX_PER_VARIANT} of 40 directions with audio are listed here" in section
