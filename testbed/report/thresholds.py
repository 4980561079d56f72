"""Thresholds: the scenario's pass/fail rules, checked against every matching call direction.

A rule with ``over: OTHER`` is a gain rule: the variant's metric minus OTHER's, for the same call and
direction, must lie within min/max; a call that failed to connect in OTHER counts as MOS 1 there.
Metrics and their units: ``testbed.results.metrics``.
"""

from __future__ import annotations

from testbed.results import UNITS, CheckResult, metric
from testbed.results.scores import CallScores, DirectionScores, UnscoredDirection
from testbed.scenario.thresholds import Threshold

Calls = dict[str, list[CallScores]]  # variant name -> its scored calls


def describe(rule: Threshold) -> str:
    unit = UNITS[rule.metric]
    bounds = " and ".join(
        part
        for part in (
            f">= {rule.min:g}{unit}" if rule.min is not None else "",
            f"<= {rule.max:g}{unit}" if rule.max is not None else "",
        )
        if part
    )
    gain = f" gain of {rule.variant} over {rule.over}" if rule.over else ""
    scope = f" in variant {rule.variant}" if rule.variant and not rule.over else ""
    call = f", call {rule.call}" if rule.call else ""
    return f"{rule.metric}{gain} {bounds}{scope}{call}"


def _within(value: float, rule: Threshold) -> bool:
    return (rule.min is None or value >= rule.min) and (rule.max is None or value <= rule.max)


def evaluate(rules: list[Threshold], variants: Calls) -> list[CheckResult]:
    """Every direction of every call a rule names is one check."""
    checks = []
    for rule in rules:
        text = describe(rule)
        targets = [rule.variant] if rule.variant else list(variants)
        for variant in targets:
            for call in variants.get(variant, []):
                if rule.call and rule.call not in (call.name, call.id):
                    continue
                for direction, scores in call.directions.items():
                    checks.append(_check(rule, text, variant, call, direction, scores, variants))
    return checks


def _baseline(rule: Threshold, call: CallScores, direction: str, variants: Calls) -> float | None:
    """The same call's metric in the variant a gain rule compares with."""
    other_call = next((c for c in variants.get(rule.over or "", []) if c.id == call.id), None)
    if other_call is None:
        return None
    other = metric(other_call, other_call.directions.get(direction), rule.metric)
    if other is None and other_call.outcome != "connected" and rule.metric.startswith("mos"):
        return 1.0  # a call that never connected in the baseline is as bad as a call gets
    return other


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
    where = f"{variant} / {call.id} / {direction}"

    def check(value: float | None, passed: bool, message: str) -> CheckResult:
        rounded = None if value is None else round(value, 3)
        return CheckResult(
            rule=text, variant=variant, call=call.id, direction=direction, value=rounded, passed=passed, message=message
        )

    if value is None:
        pesq_note = scores.pesq_note if isinstance(scores, DirectionScores) else ""
        why = call.reason or scores.note or pesq_note or "not measured"
        return check(None, False, f"{where}: {rule.metric} unavailable ({why})")
    needs = "needs " + text.split(" ", 1)[1]
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
