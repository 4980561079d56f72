"""The report's Listen section: what each listener heard, beside the clip it was compared with, so a
training audience hears fifo against EF rather than reading MOS. Players point at the run's own WAVs by
relative links (``VARIANT/audio/...``): the run directory, zipped whole, plays anywhere, offline.
"""

from __future__ import annotations

from urllib.parse import quote

from testbed.report.charts import escape
from testbed.report.figures import mos_band
from testbed.results import RunResult, VariantResult, metric
from testbed.results.scores import CallScores, DirectionScores

MAX_PER_VARIANT = 12  # a run of hundreds of light calls has audio for its PESQ sample: list that many


def _player(variant: VariantResult, relative: str | None, label: str) -> str:
    if relative is None:
        return "<td>-</td>"
    src = quote(f"{variant.name}/{relative}")
    return f'<td><audio controls preload="none" src="{src}" aria-label="{escape(label)}"></audio></td>'


def _heard(result: RunResult) -> dict[tuple[str, str], list[tuple[VariantResult, CallScores, DirectionScores]]]:
    """Per (call, direction), every variant's scored direction with audio, in the variants' order."""
    found: dict[tuple[str, str], list[tuple[VariantResult, CallScores, DirectionScores]]] = {}
    for variant in result.variants:
        kept = 0
        for call in variant.calls:
            for direction, scores in call.scored().items():
                if scores.audio_file is None or kept >= MAX_PER_VARIANT:
                    continue
                kept += 1
                found.setdefault((call.id, direction), []).append((variant, call, scores))
    return found


def listen_section(result: RunResult) -> str:
    """One table per call direction: a row per variant with the audio heard, the reference and its MOS."""
    heard = _heard(result)
    if not heard:
        return ""
    parts = [
        "<h2>Listen</h2><p class='note'>What each listener heard (the audio PESQ scored: the playout "
        "model's, or a browser's own) beside the clip it was compared with. Files are in each variant's "
        "audio/ directory.</p>"
    ]
    for (call_id, direction), rows in heard.items():
        parts.append(
            f"<h3>{escape(call_id)}: {escape(direction)}</h3><table class='listen'><tr><th>variant</th>"
            "<th>heard</th><th>reference</th><th>MOS PESQ</th><th>MOS E-model</th></tr>"
        )
        for variant, call, scores in rows:
            pesq, emodel = metric(call, scores, "mos_pesq"), metric(call, scores, "mos_emodel")
            parts.append(
                f"<tr><td>{escape(variant.name)}</td>"
                + _player(variant, scores.audio_file, f"{variant.name} {call_id} {direction} heard")
                + _player(variant, scores.reference_file, f"{variant.name} {call_id} {direction} reference")
                + _mos_cell(pesq)
                + _mos_cell(emodel)
                + "</tr>"
            )
        parts.append("</table>")
    shown = sum(len(rows) for rows in heard.values())
    total = sum(1 for v in result.variants for c in v.calls for s in c.scored().values() if s.audio_file)
    if shown < total:
        parts.append(f"<p class='note'>{shown} of {total} directions with audio are listed here.</p>")
    return "".join(parts)


def _mos_cell(value: float | None) -> str:
    if value is None:
        return '<td class="num">-</td>'
    band = mos_band(value)
    return f'<td class="num {band.css}" title="{escape(band.name)}">{value:.2f} {escape(band.name)}</td>'
