"""Benchmark: how many concurrent bidirectional light (``rtp``) Opus calls this machine carries over an
idle link with the harness keeping up: every node's sender lateness p99 <= 1 ms, no tap drops, every
call connected and every direction's E-model MOS >= 4.3.

For each N, N calls run client <-> router <-> gateway (EF, no shaping, no impairment) for --seconds of talk;
scored without PESQ (the E-model over the taps' packets). Prints, per N: connected calls, each node's
sender p50/p99/max lateness, datagrams per sendmmsg, tap packets and drops, the lowest MOS, CPU seconds
of each node's agent (its sender thread included) and taps, and the verdict.
Usage: sudo .venv/bin/python bench/light_calls.py [--counts 100,200,300,400,500,600] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

import testbed
from testbed.media.tap import load_records
from testbed.scoring.options import ScoringOptions

LATENESS_MS, MIN_MOS = 1.0, 4.3


def scenario(count: int, seconds: float) -> dict:
    return {
        "name": "light-calls",
        "calls": [
            {"name": "c", "from": "client", "to": "gateway", "codec": "opus", "dscp": "EF", "start": "1s",
             "talk": f"{seconds}s", "count": count, "endpoint": {"from": "rtp", "to": "rtp"}}
        ],
    }  # fmt: skip


def measure(count: int, seconds: float, keep: Path | None) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        directory = keep / f"n{count}" if keep else Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "light.yaml"
        path.write_text(yaml.safe_dump(scenario(count, seconds)))
        started = time.monotonic()
        result = testbed.load(path).run(directory / "run", scoring=ScoringOptions(pesq=False))
        wall = time.monotonic() - started
        variant = result.variants[0]
        workload = json.loads((directory / "run" / variant.name / "workload.json").read_text())
        connected = sum(call.outcome == "connected" for call in variant.calls)
        mos = [d.mos_emodel for call in variant.calls for d in call.scored().values()]
        lowest = min((m for m in mos if m is not None), default=float("nan"))
        senders = {key.split("/")[0]: stats for key, stats in workload["endpoints"].items()}
        pacing = {node: stats.get("pacing", {}) for node, stats in senders.items()}
        drops = packets = 0
        for prefix in workload["taps"].values():
            records = load_records(prefix)
            drops += records.dropped
            packets += len(records)
        cpu = {node: usage.get("cpu_s") for node, usage in workload["agents"].items()}
        worst_p99 = max(p.get("p99_ms", float("inf")) for p in pacing.values())
        passed = (
            connected == count and worst_p99 <= LATENESS_MS and drops == 0 and len(mos) == 2 * count
            and None not in mos and lowest >= MIN_MOS
        )  # fmt: skip
        lateness = "  ".join(
            f"{node} {p.get('p50_ms', 0):.2f}/{p.get('p99_ms', 0):.2f}/{p.get('max_ms', 0):.1f} ms "
            f"batch {senders[node].get('mean_batch', 0):.1f} rt={'y' if senders[node].get('realtime') else 'n'}"
            for node, p in pacing.items()
        )
        print(
            f"N={count:4d} connected {connected:4d}  sender p50/p99/max {lateness}  tap packets {packets} "
            f"dropped {drops}  min MOS-E {lowest:.2f}  agent CPU s {cpu}  wall {wall:.0f}s  "
            f"{'PASS' if passed else 'FAIL'}",
            flush=True,
        )
        return passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="100,200,300,400,500,600")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keep", type=Path, help="keep each run's directory here")
    args = parser.parse_args()
    best = 0
    for count in (int(c) for c in args.counts.split(",")):
        if measure(count, args.seconds, args.keep):
            best = count
    print(f"largest passing count: {best}")


if __name__ == "__main__":
    main()
