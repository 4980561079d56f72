"""Benchmark: how many concurrent bidirectional calls this machine carries before the harness itself
degrades them, and what a call costs in CPU.

For each N, N Opus calls (EF) run client <-> gateway over an idle, unshaped link for --seconds. A
direction counts as degraded when it loses any packet or its jitter exceeds 2 ms: the p95 of each
packet's arrival at the receiver's tap relative to its RTP timestamp, above the minimum (so a sender
that falls behind its 20 ms schedule counts, as a listener would notice). Prints, per N: connected
calls, worst loss, worst p95 jitter, agent CPU per call (share of one core).
Usage: sudo .venv/bin/python bench/call_capacity.py [--counts 5,10,20,30,40] [--seconds 8]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from testbed.lab import Lab
from testbed.media.tap import extended_sequence, load_records
from testbed.scenario.model import Scenario
from testbed.workload import Workload

JITTER_LIMIT_MS = 2.0
OPUS_CLOCK = 48000


def direction_stats(out: Path, result, call_id: str, sender_clip: str, receiver_tap: str) -> tuple[float, float]:
    """(loss fraction, p95 of one-way delay above its minimum in ms) for one call direction."""
    sent = np.load(out / "calls" / f"{call_id}-{sender_clip}-sent.npz")
    if len(sent["seq"]) == 0:
        return 1.0, float("nan")
    tap = load_records(result.taps[receiver_tap]).stream(int(sent["ssrc"][0]), 0)
    first = int(sent["seq"][0])
    arrived = dict(zip(extended_sequence(tap.seq, reference=first).tolist(), tap.time_ns.tolist(), strict=False))
    # the last packets sent may still be in flight when the tap stops: judge loss on all but the last 5
    settled = extended_sequence(sent["seq"])[:-5].tolist()
    lost = sum(1 for s in settled if s not in arrived) / max(1, len(settled))
    if len(tap.time_ns) < 2:
        return lost, float("nan")
    rtp_seconds = np.cumsum(np.concatenate([[0], np.diff(tap.rtp_ts.astype(np.int64)) % 2**32])) / OPUS_CLOCK
    transit = tap.time_ns / 1e9 - rtp_seconds
    return lost, float(np.percentile(transit - transit.min(), 95) * 1000)


def measure(count: int, seconds: float) -> bool:
    scenario = Scenario.model_validate(
        {
            "name": "capacity",
            "calls": [
                {
                    "name": "c",
                    "from": "client",
                    "to": "gateway",
                    "codec": "opus",
                    "duration": f"{seconds}s",
                    "count": count,
                }
            ],
        }
    )
    with tempfile.TemporaryDirectory() as directory, Lab(scenario, purpose="bench call_capacity") as lab:
        out = Path(directory)
        result = Workload(lab, out).run()
        connected = sum(c.outcome == "connected" for c in result.calls)
        worst_loss, worst_jitter = 0.0, 0.0
        for call in result.calls:
            for clip, tap in (("client", "gateway/wan"), ("gateway", "client/lan")):
                loss, jitter = direction_stats(out, result, call.id, clip, tap)
                worst_loss, worst_jitter = max(worst_loss, loss), max(worst_jitter, jitter)
        cpu = sum(a["cpu_s"] for a in result.agents.values())
    per_call = cpu / seconds / count
    ok = connected == count and worst_loss == 0 and worst_jitter <= JITTER_LIMIT_MS
    print(
        f"{count:>5} {connected:>9} {worst_loss:>9.2%} {worst_jitter:>12.2f} {per_call:>12.1%} {cpu / seconds:>10.0%}"
        f"  {'ok' if ok else 'degraded'}"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="5,10,20,30,40")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    print(f"{'calls':>5} {'connected':>9} {'max loss':>9} {'p95 jitter ms':>12} {'cpu/call':>12} {'agents':>10}")
    best = 0
    for count in (int(c) for c in args.counts.split(",")):
        if measure(count, args.seconds):
            best = count
    print(f"largest clean count: {best} concurrent calls (limits: no loss, p95 jitter <= {JITTER_LIMIT_MS} ms)")


if __name__ == "__main__":
    main()
