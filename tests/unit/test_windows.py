"""Windowed threshold rules and the vendors' presets (pure): windows over loss bins and per-second
series, the whole call when a window is longer, Twilio's 3-of-5 samples, and the rule model's errors."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from testbed.report.thresholds import evaluate
from testbed.report.windows import Series, evaluate_windows
from testbed.results import CallScores, DirectionScores
from testbed.scenario.model import Scenario
from testbed.scenario.thresholds import PRESETS, Threshold
from tests.helpers.scores import network_stats


def rule(**data) -> Threshold:
    return Threshold.model_validate(data)


def loss_series(lost_at: list[int], bins: int = 120, per_bin: int = 5) -> Series:
    """0.1 s bins of 5 packets (50 packets/s); one packet lost in each listed bin."""
    lost = np.zeros(bins)
    for index in lost_at:
        lost[index] += 1
    return Series(0.1, lost, np.full(bins, float(per_bin)))


def test_one_loss_in_200_ms_passes_two_fail_and_the_window_is_named():
    burst = rule(metric="loss", max=10, window="200ms")
    assert evaluate_windows(loss_series([10, 30, 50]), burst).passed  # 1 of 10 packets: 10%, not above
    found = evaluate_windows(loss_series([10, 30, 71, 72]), burst)
    assert not found.passed and found.value == pytest.approx(20.0)
    assert (found.start_s, found.end_s) == pytest.approx((7.1, 7.3)) and found.broken == 1
    adjacent = evaluate_windows(loss_series([71, 80]), burst)  # 0.9 s apart: never in one 200 ms window
    assert adjacent.passed


def test_a_window_longer_than_the_call_is_the_whole_call():
    found = evaluate_windows(loss_series([5, 6, 7], bins=100), rule(metric="loss", max=0.5, window="15s"))
    assert found.windows == 1 and (found.start_s, found.end_s) == pytest.approx((0.0, 10.0))
    assert found.value == pytest.approx(100 * 3 / 500) and not found.passed


def test_15_s_windows_slide_and_the_worst_is_named():
    lost = list(range(200, 230))  # 30 packets lost from 20 s to 23 s of a 60 s call
    found = evaluate_windows(loss_series(lost, bins=600), rule(metric="loss", max=1, window="15s"))
    assert not found.passed and found.value == pytest.approx(100 * 30 / 750)
    assert 8.0 <= found.start_s <= 20.0 and found.end_s - found.start_s == pytest.approx(15.0)


def test_three_of_five_samples_fail_twilio_two_do_not():
    jitter = rule(metric="jitter", max=30, window="5s", samples=3)
    two = Series(1.0, np.array([5, 40, 5, 45, 5, 5, 5, 5, 5, 5], float))
    assert evaluate_windows(two, jitter).passed
    three = Series(1.0, np.array([5, 40, 5, 45, 50, 5, 5, 5, 5, 5], float))
    found = evaluate_windows(three, jitter)
    assert not found.passed and found.over_samples == 3 and (found.start_s, found.end_s) == (0.0, 5.0)
    assert found.value == 50 and found.broken == 2  # windows 0-5 and 1-6 s


def test_mean_of_seconds_and_missing_seconds():
    delay = rule(metric="mean_delay", max=50, window="3s")
    found = evaluate_windows(Series(1.0, np.array([10, np.nan, 10, 200, 10, 10], float)), delay)
    assert not found.passed and found.value == pytest.approx(105.0)  # 1-4 s: no value, 10, 200
    assert (found.start_s, found.end_s) == (1.0, 4.0)
    assert evaluate_windows(Series(1.0, np.full(4, np.nan)), delay).value is None


def direction(mean_ms: float, lost: list[int]) -> DirectionScores:
    network = network_stats()
    network["delay"]["mean_ms"] = mean_ms
    network["per_second"] = {
        "start_s": [0.0, 1.0], "sent": [50, 50], "lost": [0, 0], "loss_fraction": [0.0, 0.0],
        "mean_delay_ms": [mean_ms, mean_ms], "p95_delay_ms": [mean_ms, mean_ms], "jitter_ms": [1.0, 1.0],
    }  # fmt: skip
    network["loss_bins"] = {"bin_s": 0.1, "sent": [5] * 20, "lost": lost}
    return DirectionScores.model_validate({"codec": "opus", "wideband": True, "network": network})


def call(up_ms: float, down_ms: float, lost: list[int]) -> CallScores:
    return CallScores(
        id="call", name="call", outcome="connected", reason="", setup_s=0.1, codec="opus", dscp=46,
        directions={"client->gateway": direction(up_ms, lost), "gateway->client": direction(down_ms, [0] * 20)},
    )  # fmt: skip


def test_teams_preset_names_the_failing_window_and_passes_a_clean_call():
    rules = Scenario.model_validate({"name": "x", "thresholds": [{"preset": "teams"}]}).thresholds
    assert len(rules) == len(PRESETS["teams"]) and all(r.preset == "teams" for r in rules)
    bad = [0] * 20
    bad[12], bad[13] = 1, 1  # two of 10 packets lost in 1.2-1.4 s
    checks = evaluate(rules, {"fifo": [call(60.0, 45.0, bad)], "ef": [call(15.0, 15.0, [0] * 20)]})
    failed = [c.message for c in checks if not c.passed]
    assert all(c.passed for c in checks if c.variant == "ef")
    assert any("client->gateway [teams]: mean_delay 60 ms" in m for m in failed)
    assert any("rtt 105 ms" in m for m in failed)  # 60 + 45: the round trip
    assert any("loss worst window 20% in 1.2-1.4 s of the call" in m for m in failed), failed


@pytest.mark.parametrize(
    "data, message",
    [
        ({"preset": "zoom"}, "unknown preset 'zoom'; allowed: teams, twilio"),
        ({"preset": "teams", "max": 1}, "max not allowed beside a preset"),
        ({"metric": "loss", "max": 1, "samples": 3}, "it needs 'window'"),
        ({"metric": "setup_time", "max": 1, "window": "5s"}, "'window' applies to loss"),
        ({"metric": "jitter", "max": 1, "window": "200ms"}, "allowed 1s to 3600s in steps of 1s for jitter"),
        ({"metric": "loss", "max": 1, "window": "250ms"}, "in steps of 0.1s for loss"),
        ({"metric": "loss", "max": 1, "window": "5s", "over": "a", "variant": "b"}, "no 'percentile' or 'over'"),
        ({"metric": "loss", "max": 1, "window": "5s", "samples": 6}, "a 5s window has only 5 one-second samples"),
        ({"metric": "loss", "max": 1, "window": "61min"}, "allowed 0.1s to 3600s"),
    ],
)
def test_bad_window_and_preset_rules_say_why(data, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Scenario.model_validate({"name": "x", "thresholds": [data]})
