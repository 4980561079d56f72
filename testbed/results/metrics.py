"""The metrics thresholds, the console and the report name, read from scores in one place."""

from __future__ import annotations

from testbed.results.scores import CallScores, DirectionScores, UnscoredDirection

UNITS = {
    "mos_emodel": "",
    "mos_pesq": "",
    "loss": "%",
    "p95_delay": " ms",
    "jitter": " ms",
    "setup_time": " s",
    "marked_ef": "%",
    "mean_delay": " ms",
    "rtt": " ms",
    "reorder": "%",
}
METRICS = tuple(UNITS)


def reverse_direction(call: CallScores, direction: DirectionScores) -> DirectionScores | None:
    """The same call's other direction (B->A for A->B), if it was scored: with this one, a round trip."""
    label = next((name for name, scores in call.directions.items() if scores is direction), None)
    if label is None:
        return None
    other = call.directions.get("->".join(reversed(label.split("->"))))
    return other if isinstance(other, DirectionScores) else None


def metric(call: CallScores, direction: DirectionScores | UnscoredDirection | None, name: str) -> float | None:
    """One metric of one call direction (None when it could not be measured). Units as in ``UNITS``:
    loss is network loss in percent, p95_delay the one-way delay's 95th percentile, jitter the mean RFC
    3550 jitter, setup_time seconds, marked_ef the percentage of the sender's RTP packets marked EF (DSCP
    46) as counted on the sender's own interface, mean_delay the mean one-way delay, rtt this direction's
    mean one-way delay plus the reverse direction's (the round trip a media packet and its answer make),
    reorder the percentage of received packets that arrived out of order. The MOS are the headline
    listener's (``listener``): the playout model's, or a browser's own playout."""
    if name == "setup_time":
        return call.setup_s
    if name not in UNITS:
        raise ValueError(f"unknown metric {name!r}")
    if not isinstance(direction, DirectionScores):
        return None
    if name == "mos_emodel":
        return direction.mos_emodel
    if name == "mos_pesq":
        return direction.mos_pesq
    if name == "marked_ef":
        return None if direction.dscp is None or not direction.dscp.packets else 100.0 * direction.dscp.marked_ef
    network = direction.network
    if network is None:
        return None
    if name == "loss":
        fraction = network.loss.fraction
        return None if fraction is None else 100.0 * fraction
    if name == "p95_delay":
        return network.delay.p95_ms
    if name == "mean_delay":
        return network.delay.mean_ms
    if name == "reorder":
        received = network.loss.received
        return 100.0 * network.reordered / received if received else None
    if name == "rtt":
        reverse = reverse_direction(call, direction)
        back = reverse.network.delay.mean_ms if reverse is not None and reverse.network is not None else None
        there = network.delay.mean_ms
        return None if there is None or back is None else there + back
    return network.jitter.mean_ms


def counted_metric(
    call: CallScores, direction: DirectionScores | UnscoredDirection | None, name: str, scored: set[str]
) -> float | None:
    """``metric``, with a call that never connected counted as MOS 1 in the MOS metrics of ``scored``
    (``scored_metrics``): what sweeps and baselines read, so a failed call cannot hide."""
    value = metric(call, direction, name)
    if value is None and call.outcome != "connected" and name in scored:
        return 1.0
    return value


def scored_metrics(calls: list[CallScores]) -> set[str]:
    """The MOS metrics a call that never connected counts as 1 in: the E-model always (scoring computes it
    for every call that connected), PESQ where some call of the same run(s) has it (it is off with
    --no-pesq, and sampled with many calls), else PESQ's figures would be the failed calls' alone."""
    pesq = any(
        metric(call, direction, "mos_pesq") is not None for call in calls for direction in call.directions.values()
    )
    return {"mos_emodel", "mos_pesq"} if pesq else {"mos_emodel"}
