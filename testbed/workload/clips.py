"""What a scenario's calls will encode, known before its lab is up: the runner has the fork server
encode it while the lab is built (``testbed.lab.forkserver``), so agents prepare at once."""

from __future__ import annotations

from typing import Any

from testbed.scenario.model import Impairment, Scenario
from testbed.workload.call_plan import SIDES, Call, expand_calls

ENCODED_CLIP_ENDPOINTS = ("aiortc", "rtp")  # the endpoints that send a pre-encoded clip


def clips_to_encode(calls: list[Call]) -> list[tuple[str, str, tuple[Any, ...]]]:
    """The (codec, clip, Opus settings) the calls' endpoints will encode, as far as the scenario alone
    says (a user's speech and conversations are written during the run, so not theirs)."""
    keys = {
        (call.codec, call.clips[side], tuple(call.opus))
        for call in calls
        if not call.speech and call.pattern != "conversation"
        for side in SIDES
        if call.endpoints[side] in ENCODED_CLIP_ENDPOINTS
    }
    return sorted(keys)


def scenario_clips(scenario: Scenario) -> list[tuple[str, str, tuple[Any, ...]]]:
    """What the scenario's endpoints will encode (``calls.clips_to_encode``), known before its lab is up."""
    return clips_to_encode(expand_calls(scenario.calls, configured_loss(scenario.links)))


def configured_loss(links: dict[str, dict[str, Impairment]]) -> float:
    """The highest random loss (percent, a Gilbert-Elliott model's mean) configured on a link end: what
    ``opus: {expected_loss: auto}`` provisions FEC for."""
    worst = 0.0
    for ends in links.values():
        for impairment in ends.values():
            loss = impairment.loss
            if loss is None:
                continue
            if loss.model == "random" and loss.rate is not None:
                worst = max(worst, loss.rate)
            elif loss.model == "gilbert_elliott" and loss.p is not None and loss.r is not None and loss.p + loss.r > 0:
                bad = loss.p / (loss.p + loss.r)
                worst = max(worst, bad * loss.loss_bad + (1 - bad) * loss.loss_good)
    return worst
