"""Calls from the harness's side (the plan of them: ``call_plan``): place them in batches through the nodes'
agents (relaying each leg's description from caller to callee and back, as a dialer's signalling
server would), follow their state from the agents' events, and end them in three steps: stop the
media, let the path drain, hang up. The endpoint kind of each side (``aiortc`` today) is the agent's
business; this module never knows what an endpoint is made of."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed.media.clips import load_clip
from testbed.media.conversation import conversation, speak
from testbed.scenario.speech import RATES, rate_path, write_rates, write_wav
from testbed.scenario.speech import check as check_speech
from testbed.workload.agents import AgentError, Agents
from testbed.workload.call_plan import SIDES, Call, side_batches


def prepare_speech(calls: list[Call], directory: Path) -> None:
    """Convert each user's reference WAV once to the rates the testbed sends and scores at, in the run's
    directory (so it stays with the run for rescoring, and containers see it), and point the calls'
    sides at it."""
    prepared: dict[str, str] = {}
    for call in calls:
        for side, wav in call.speech.items():
            if wav not in prepared:
                prefix = directory / f"{len(prepared) + 1}-{Path(wav).stem}"
                write_rates(check_speech(Path(wav)), prefix)
                prepared[wav] = str(prefix)
            call.clips[side] = prepared[wav]
    for call in calls:
        if call.pattern == "conversation":
            converse(call, directory)


CONVERSATION_MAX_S = 120.0  # a longer call loops its conversation


def converse(call: Call, directory: Path) -> None:
    """Give the call its own P.59 conversation (seeded by its id): each side's speech, gated by who talks
    when, written beside the user's references and sent and scored in place of the plain clips."""
    planned = call.talk if call.talk is not None else call.duration
    talks = conversation(min(planned + 2.0, CONVERSATION_MAX_S), call.id)
    for side in SIDES:
        prefix = directory / f"{call.id}-{side}"
        for rate in RATES:
            write_wav(
                rate_path(prefix, rate), speak(load_clip(call.clips[side], rate), rate, getattr(talks, side)), rate
            )
        call.clips[side] = str(prefix)
    call.activity = talks.activity()


def per_batch(
    agents: Agents,
    calls: list[Call],
    side: str,
    command: str,
    arguments: Callable[[list[Call]], dict[str, Any]],
    timeout: float = 60.0,
) -> list[tuple[Call, Any]]:
    """Send ``command`` per (node, kind) batch; pair each call with its result. A batch the agent refuses
    marks its calls as errors; a per-leg ``{"error": ...}`` marks that call only."""
    paired = []
    for (node, kind), batch in side_batches(calls, side).items():
        try:
            results = agents[node].call(command, timeout=timeout, kind=kind, **arguments(batch))["legs"]
        except AgentError as exc:
            for call in batch:
                call.fail("error", str(exc))
            continue
        for call, result in zip(batch, results, strict=True):
            if isinstance(result, dict) and result.get("error"):
                call.fail("error", f"{node}: {result['error']}")
            else:
                paired.append((call, result))
    return paired


def signal_through_lab(agents: Agents, calls: list[Call], url: str, ca_file: str) -> None:
    """Every call node carries its offers and answers through the lab's signalling service. An exchange
    gives up just before the calls' setup timeout, so a call whose signalling cannot get through says so."""
    timeout = max(1.0, 0.75 * min((call.setup_timeout for call in calls), default=10.0))
    for node in sorted({call.node(side) for call in calls for side in SIDES}):
        agents[node].call("signalling", url=url, ca_file=ca_file, wait_s=timeout)


def trust_lab_ca(agents: Agents, calls: list[Call]) -> None:
    """Callers that use the lab's TURN server trust its CA (one per lab) before their endpoints start."""
    configs = [call for call in calls if call._ice_config and call._ice_config.get("ca_file")]
    for node in sorted({call.caller for call in configs}):
        config = configs[0]._ice_config or {}
        agents[node].call("lab_trust", ca_file=config["ca_file"], spki=config["spki"], hosts=[config["address"]])


def prepare(agents: Agents, calls: list[Call]) -> None:
    """Let every endpoint load its codec and encode its clip (a browser launch its legs' browsers) before
    the workload's clock starts."""
    trust_lab_ca(agents, calls)
    Key = tuple[str, str, str, str, tuple[Any, ...]]
    needed: dict[Key, list[float]] = defaultdict(list)  # each leg's clip offset
    longest: dict[Key, float] = {}
    for call in calls:
        for side in SIDES:
            key = (call.node(side), call.endpoints[side], call.codec, call.clips[side], tuple(call.opus))
            needed[key].append(call.clip_offset.get(side, 0.0))
            longest[key] = max(longest.get(key, 0.0), call.longest)
    futures = [
        agents[node].request(
            "endpoint_prepare",
            kind=kind,
            codec=codec,
            clip=clip,
            legs=len(offsets),
            seconds=longest[(node, kind, codec, clip, opus)],
            opus=list(opus),
            offsets=offsets,
        )
        for (node, kind, codec, clip, opus), offsets in needed.items()
    ]
    for future in futures:
        future.result(120)


def place_calls(agents: Agents, calls: list[Call], out_dir: Path) -> None:
    """Open the callers' legs, answer at the callees, accept at the callers; connection follows by events."""
    now = time.time()
    for call in calls:
        call.offered_at = now
    offers = per_batch(
        agents, calls, "caller", "endpoint_open", lambda b: {"legs": [c.leg("caller", out_dir) for c in b]}
    )
    offered = {call.id: offer for call, offer in offers}
    live = [call for call in calls if call.id in offered]
    answers = per_batch(
        agents,
        live,
        "callee",
        "endpoint_answer",
        lambda b: {"legs": [c.leg("callee", out_dir) for c in b], "remotes": [offered[c.id] for c in b]},
    )
    answered = {call.id: answer for call, answer in answers}
    live = [call for call in live if call.id in answered]
    per_batch(
        agents,
        live,
        "caller",
        "endpoint_accept",
        lambda b: {"calls": [c.id for c in b], "remotes": [answered[c.id] for c in b]},
    )


def on_call_event(call: Call, node: str, message: dict[str, Any]) -> None:
    """Apply an agent's call event: both sides connected -> connected; a side failing -> failed/dropped."""
    side = "caller" if node == call.caller else "callee"
    state = message.get("state")
    if state == "connected":
        if call.side_connected(side) and call.connected_at is None and call.outcome == "pending":
            call.connected_at = message["time"]
            call.setup_s = round(call.connected_at - (call.offered_at or call.connected_at), 4)
            call.outcome = "connected"
    elif state == "dropped" and call.outcome == "connected":
        call.outcome, call.dropped_at = "dropped", message["time"]
        call.reason = f"{node}: {message.get('reason') or 'lost the connection'}"
    elif state in ("failed", "dropped") and call.outcome == "pending":
        call.outcome, call.reason = "failed", f"{node}: {message.get('reason') or 'ICE/DTLS failed'}"


def check_setup_timeout(call: Call, now: float) -> None:
    if call.outcome == "pending" and call.offered_at is not None and now - call.offered_at > call.setup_timeout:
        call.outcome = "failed"
        call.reason = f"not connected within the setup timeout of {call.setup_timeout:g}s"
