"""Benchmark: up+down time of the 3-node lab (client, router, gateway).

Prints median and spread over N runs. Target (issue: foundation): median <= 0.2 s on the netns backend.
Usage: sudo .venv/bin/python bench/lab_updown.py [--runs 20] [--backend netns] [--scenario FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from testbed.lab import Lab
from testbed.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--backend", default="netns")
    parser.add_argument("--scenario", type=Path, default=REPO / "scenarios" / "minimal.yaml")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario).scenario
    totals, ups = [], []
    for _ in range(args.runs):
        started = time.perf_counter()
        with Lab(scenario, backend=args.backend, purpose="bench lab_updown") as lab:
            ups.append(lab.up_seconds)
        totals.append(time.perf_counter() - started)
    quartiles = statistics.quantiles(totals, n=4)
    print(f"lab up+down, {args.backend} backend, {len(scenario.topology.nodes)} nodes, {args.runs} runs")
    print(
        f"  up+down  median {statistics.median(totals) * 1000:7.1f} ms   "
        f"p25 {quartiles[0] * 1000:6.1f}   p75 {quartiles[2] * 1000:6.1f}   "
        f"min {min(totals) * 1000:6.1f}   max {max(totals) * 1000:6.1f}   stdev {statistics.stdev(totals) * 1000:5.1f}"
    )
    print(f"  up only  median {statistics.median(ups) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
