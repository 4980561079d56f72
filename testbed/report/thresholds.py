"""Thresholds: the scenario's pass/fail rules, checked against every matching call direction.

Units: ``mos_emodel`` and ``mos_pesq`` are MOS (1-5); ``loss`` is network loss in percent;
``p95_delay`` the 95th percentile one-way network delay in ms; ``jitter`` the mean RFC 3550 jitter in
ms; ``setup_time`` seconds. A rule with ``over: OTHER`` is a gain rule: the variant's metric minus
OTHER's, for the same call and direction, must lie within min/max; a call that failed to connect in
OTHER counts as MOS 1 there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from testbed.scenario.model import Threshold

UNITS = {"mos_emodel": "", "mos_pesq": "", "loss": "%", "p95_delay": " ms", "jitter": " ms", "setup_time": " s"}


def metric(call: dict[str, Any], direction: dict[str, Any], name: str) -> float | None:
    """One metric of one call direction from the scores (None when it could not be measured)."""
    if name == "setup_time":
        return call.get("setup_s")
    if name in ("mos_emodel", "mos_pesq"):
        return direction.get(name)
    network = direction.get("network") or {}
    if name == "loss":
        fraction = (network.get("loss") or {}).get("fraction")
        return None if fraction is None else 100.0 * fraction
    if name == "p95_delay":
        return (network.get("delay") or {}).get("p95_ms")
    if name == "jitter":
        return (network.get("jitter") or {}).get("mean_ms")
    raise ValueError(f"unknown metric {name!r}")


@dataclass(frozen=True)
class Check:
    """One rule applied to one call direction."""

    rule: str
    variant: str
    call: str
    direction: str
    value: float | None
    passed: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def evaluate(rules: list[Threshold], variants: dict[str, dict[str, Any]]) -> list[Check]:
    """``variants``: variant name -> scores (``{"calls": [...]}``). Every matching direction is a check."""
    checks = []
    for rule in rules:
        text = describe(rule)
        targets = [rule.variant] if rule.variant else list(variants)
        for variant in targets:
            for call in (variants.get(variant) or {}).get("calls", []):
                if rule.call and rule.call not in (call["name"], call["id"]):
                    continue
                for direction, scores in call["directions"].items():
                    checks.append(_check(rule, text, variant, call, direction, scores, variants))
    return checks


def _check(
    rule: Threshold,
    text: str,
    variant: str,
    call: dict[str, Any],
    direction: str,
    scores: dict[str, Any],
    variants: dict[str, dict[str, Any]],
) -> Check:
    value = metric(call, scores, rule.metric)
    where = f"{variant} / {call['id']} / {direction}"
    if value is None:
        why = call.get("reason") or scores.get("note") or scores.get("pesq_note") or "not measured"
        return Check(text, variant, call["id"], direction, None, False, f"{where}: {rule.metric} unavailable ({why})")
    if rule.over:
        other_call = next((c for c in variants.get(rule.over, {}).get("calls", []) if c["id"] == call["id"]), None)
        other = metric(other_call, other_call["directions"].get(direction, {}), rule.metric) if other_call else None
        if other is None and other_call and other_call["outcome"] != "connected" and rule.metric.startswith("mos"):
            other = 1.0  # a call that never connected in the baseline is as bad as a call gets
        if other is None:
            return Check(
                text,
                variant,
                call["id"],
                direction,
                None,
                False,
                f"{where}: no {rule.metric} in variant {rule.over} to compare with",
            )
        gain = value - other
        passed = _within(gain, rule)
        return Check(
            text,
            variant,
            call["id"],
            direction,
            round(gain, 3),
            passed,
            f"{where}: {rule.metric} {value:.3g} vs {other:.3g} in {rule.over}, gain {gain:+.3g} "
            f"({'ok' if passed else 'needs ' + text.split(' ', 1)[1]})",
        )
    passed = _within(value, rule)
    unit = UNITS[rule.metric]
    return Check(
        text,
        variant,
        call["id"],
        direction,
        round(value, 3),
        passed,
        f"{where}: {rule.metric} {value:.3g}{unit} ({'ok' if passed else 'needs ' + text.split(' ', 1)[1]})",
    )
