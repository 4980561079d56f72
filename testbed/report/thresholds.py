"""Thresholds: the scenario's pass/fail rules, checked against every matching call direction, or against a
percentile of the metric over a variant's matching call directions.

A rule with ``over: OTHER`` is a gain rule: the variant's metric minus OTHER's, for the same call and
direction, must lie within min/max; a call that failed to connect in OTHER counts as MOS 1 there.
A rule with ``percentile: P`` bounds the P-th percentile (``testbed.results.distribution.percentile``:
numpy's linear method) of the metric, or of the paired gains, over every matching direction of a variant:
one check per variant. There a call that failed to connect counts as MOS 1 (so failed calls cannot hide
behind a good percentile); any other direction without a value is left out, and the message says how
many were. Metrics and their units: ``testbed.results.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable

from testbed.report.windows import evaluate_windows, series
from testbed.results import UNITS, CheckResult, metric
from testbed.results.distribution import DEFAULT_MOS_THRESHOLD, DEFAULT_THRESHOLD_SOURCE, percentile, percentile_name
from testbed.results.scores import CallScores, DirectionScores, UnscoredDirection
from testbed.scenario.thresholds import Threshold

Calls = dict[str, list[CallScores]]  # variant name -> its scored calls
ALL_CALLS, ALL_DIRECTIONS = "all calls", "all directions"  # a percentile check's call and direction


def _bounds(rule: Threshold) -> str:
    """What a rule asks, without its metric: "gain of a over b >= 1", ">= 4 in variant a, call sales"."""
    unit = UNITS[rule.metric]
    bounds = " and ".join(
        part
        for part in (
            f">= {rule.min:g}{unit}" if rule.min is not None else "",
            f"<= {rule.max:g}{unit}" if rule.max is not None else "",
        )
        if part
    )
    bounds += window_text(rule)
    gain = f"gain of {rule.variant} over {rule.over} " if rule.over else ""
    scope = f" in variant {rule.variant}" if rule.variant and not rule.over else ""
    call = f", call {rule.call}" if rule.call else ""
    direction = f", {rule.direction}" if rule.direction else ""
    return f"{gain}{bounds}{scope}{call}{direction}"


def describe(rule: Threshold) -> str:
    """The rule as one line: "mos_emodel >= 4 in variant ef", "p5 of mos_emodel >= 4 in variant ef",
    "loss <= 1% in any 15 s (teams)", "rtt <= 400 ms, not broken in 3 of any 5 one-second samples (twilio)"."""
    head = rule.metric if rule.percentile is None else f"{percentile_name(rule.percentile)} of {rule.metric}"
    return f"{head} {_bounds(rule)}" + (f" ({rule.preset})" if rule.preset else "")


def window_text(rule: Threshold) -> str:
    """ " in any 15 s", " in any 200 ms", ", not broken in 3 of any 5 one-second samples", or "" (whole call)."""
    if rule.window is None:
        return ""
    if rule.samples is not None:
        return f", not broken in {rule.samples} of any {rule.window:g} one-second samples"
    return f" in any {rule.window * 1000:g} ms" if rule.window < 1 else f" in any {rule.window:g} s"


def mos_threshold(rules: list[Threshold], variant: str) -> tuple[float, str]:
    """The MOS E-model bar a variant's distribution counts 'below' against, and where it comes from: the
    highest ``min`` of the plain (not gain) mos_emodel rules for the whole variant (rules naming the variant
    before rules for every variant; rules for one call only are not the variant's bar), else 3.6 (R 70)."""
    plain = [
        rule
        for rule in rules
        if rule.metric == "mos_emodel"
        and rule.over is None
        and rule.min is not None
        and rule.call is None
        and rule.direction is None
        and rule.variant in (None, variant)
    ]
    named = [rule for rule in plain if rule.variant == variant] or plain
    if not named:
        return DEFAULT_MOS_THRESHOLD, DEFAULT_THRESHOLD_SOURCE
    best = max(named, key=lambda rule: rule.min or 0.0)
    return float(best.min or 0.0), f"scenario threshold: {describe(best)}"


def _within(value: float, rule: Threshold) -> bool:
    return (rule.min is None or value >= rule.min) and (rule.max is None or value <= rule.max)


def evaluate(rules: list[Threshold], variants: Calls) -> list[CheckResult]:
    """Every direction of every call a rule names is one check; a percentile rule is one check per variant."""
    checks = []
    for rule in rules:
        text = describe(rule)
        targets = [rule.variant] if rule.variant else list(variants)
        for variant in targets:
            calls = [c for c in variants.get(variant, []) if not rule.call or rule.call in (c.name, c.id)]
            if rule.percentile is not None:
                checks.append(_percentile_check(rule, text, variant, calls, variants))
                continue
            for call in calls:
                for direction, scores in _directions(rule, call):
                    checks.append(_check(rule, text, variant, call, direction, scores, variants))
    return checks


def _directions(rule: Threshold, call: CallScores) -> list[tuple[str, DirectionScores | UnscoredDirection]]:
    """The call's directions the rule looks at (all, or the one it names)."""
    return [(label, scores) for label, scores in call.directions.items() if rule.direction in (None, label)]


def _failed_mos(rule: Threshold, call: CallScores) -> float | None:
    """A call that never connected is as bad as a call gets: MOS 1 (None for other metrics)."""
    return 1.0 if call.outcome != "connected" and rule.metric.startswith("mos") else None


def _baseline(rule: Threshold, call: CallScores, direction: str, variants: Calls) -> float | None:
    """The same call's metric in the variant a gain rule compares with."""
    other_call = next((c for c in variants.get(rule.over or "", []) if c.id == call.id), None)
    if other_call is None:
        return None
    other = metric(other_call, other_call.directions.get(direction), rule.metric)
    return _failed_mos(rule, other_call) if other is None else other


def _percentile_check(
    rule: Threshold, text: str, variant: str, calls: list[CallScores], variants: Calls
) -> CheckResult:
    """One check of a percentile of the metric (or of the paired gains) over a variant's directions."""
    assert rule.percentile is not None
    values: list[float] = []
    missing = 0
    for call in calls:
        for direction, scores in _directions(rule, call):
            value = metric(call, scores, rule.metric)
            value = _failed_mos(rule, call) if value is None else value
            if value is not None and rule.over:
                other = _baseline(rule, call, direction, variants)
                value = None if other is None else value - other
            if value is None:
                missing += 1
            else:
                values.append(value)
    name = percentile_name(rule.percentile)
    what = f"{name} of {rule.metric}" + (f" gain vs {rule.over}" if rule.over else "")
    where = variant if not rule.call else f"{variant} / {rule.call}"
    left_out = f", {missing} without a value left out" if missing else ""
    over = f"over {len(values)} direction{'s' if len(values) != 1 else ''}{left_out}"

    def check(value: float | None, passed: bool, message: str) -> CheckResult:
        return CheckResult(
            rule=text,
            variant=variant,
            call=rule.call or ALL_CALLS,
            direction=ALL_DIRECTIONS,
            value=None if value is None else round(value, 3),
            passed=passed,
            message=message,
            directions=len(values),
        )

    if not values:
        return check(None, False, f"{where}: no {rule.metric} values to take the {name} of ({over})")
    value = percentile(values, rule.percentile)
    passed = _within(value, rule)
    shown = f"{value:+.3g}" if rule.over else f"{value:.3g}{UNITS[rule.metric]}"
    verdict = "ok" if passed else "needs " + _bounds(rule)
    return check(value, passed, f"{where}: {what} {shown} {over} ({verdict})")


def _check(
    rule: Threshold,
    text: str,
    variant: str,
    call: CallScores,
    direction: str,
    scores: DirectionScores | UnscoredDirection,
    variants: Calls,
) -> CheckResult:
    value = metric(call, scores, rule.metric)
    where = f"{variant} / {call.id} / {direction}" + (f" [{rule.preset}]" if rule.preset else "")

    def check(value: float | None, passed: bool, message: str) -> CheckResult:
        rounded = None if value is None else round(value, 3)
        return CheckResult(
            rule=text, variant=variant, call=call.id, direction=direction, value=rounded, passed=passed, message=message
        )

    if rule.window is not None and isinstance(scores, DirectionScores):
        return _window_check(rule, where, call, scores, check)
    if value is None:
        pesq_note = scores.pesq_note if isinstance(scores, DirectionScores) else ""
        why = call.reason or scores.note or pesq_note or "not measured"
        return check(None, False, f"{where}: {rule.metric} unavailable ({why})")
    needs = "needs " + _bounds(rule)
    if rule.over:
        other = _baseline(rule, call, direction, variants)
        if other is None:
            return check(None, False, f"{where}: no {rule.metric} in variant {rule.over} to compare with")
        gain = value - other
        passed = _within(gain, rule)
        return check(
            gain,
            passed,
            f"{where}: {rule.metric} {value:.3g} vs {other:.3g} in {rule.over}, gain {gain:+.3g} "
            f"({'ok' if passed else needs})",
        )
    passed = _within(value, rule)
    unit = UNITS[rule.metric]
    return check(value, passed, f"{where}: {rule.metric} {value:.3g}{unit} ({'ok' if passed else needs})")


def _window_check(
    rule: Threshold, where: str, call: CallScores, scores: DirectionScores, check: Callable[..., CheckResult]
) -> CheckResult:
    """A windowed rule on one direction (``windows``): the failing (or worst) window named by its time,
    seconds from the direction's first packet."""
    data = series(call, scores, rule.metric, per_second=rule.samples is not None)
    if data is None or not data.values.size:
        return check(None, False, f"{where}: {rule.metric} per window unavailable (no series scored)")
    found = evaluate_windows(data, rule)
    unit = UNITS[rule.metric]
    shown = "-" if found.value is None else f"{found.value:.3g}{unit}"
    span = f"{found.start_s:g}-{found.end_s:g} s of the call"
    if rule.samples is not None:
        detail = f"{found.over_samples} of the samples in {span} break it, worst {shown}"
        tail = f"{found.broken} of {found.windows} windows" if not found.passed else "ok"
    else:
        detail = f"{shown} in {span}{' (the whole call)' if found.windows == 1 else ''}"
        tail = f"{found.broken} of {found.windows} windows break it" if not found.passed else "ok"
    needs = "" if found.passed else f"; needs {_bounds(rule)}"
    verdict = "worst window" if found.passed or rule.samples is None else "first failing window"
    return check(found.value, found.passed, f"{where}: {rule.metric} {verdict} {detail} ({tail}{needs})")
