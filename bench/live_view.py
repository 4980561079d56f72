"""Benchmark: does the live view disturb the calls? The office demo run with the live view on and off,
alternating, in a pseudo-terminal (`script`, so the view renders as it would for a training audience).
Per mode it prints the senders' pacing against their 20 ms clock (p99 and packets more than 1 ms late,
per direction, from each leg's summary), the impairment engines' late releases, and the agents' CPU.
Usage: sudo .venv/bin/python bench/live_view.py [--runs 3] [--scenario scenarios/office.yaml]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def one_run(scenario: Path, live: bool) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="live-bench-") as tmp:
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "testbed.cli", "run", str(scenario), "--out", str(out)]
        command.append("--live" if live else "--no-live")
        subprocess.run(
            ["script", "-qec", shlex.join(command), "/dev/null"], stdout=subprocess.DEVNULL, check=False, timeout=600
        )
        figures: dict[str, list[float]] = {
            "pacing_p99_ms": [],
            "late_over_1ms": [],
            "engine_late": [],
            "agent_cpu_s": [],
        }
        for entry in json.loads((out / "run.json").read_text())["runs"]:
            workload = json.loads((out / entry["name"] / "workload.json").read_text())
            for call in workload["calls"]:
                for side in call["sides"].values():
                    pacing = side.get("pacing") or {}
                    if pacing:
                        figures["pacing_p99_ms"].append(pacing["p99_ms"])
                        figures["late_over_1ms"].append(pacing["late_over_1ms"])
            figures["engine_late"] += [e.get("late_over_1ms", 0) for e in workload["engines"].values()]
            figures["agent_cpu_s"] += [a["cpu_s"] for a in workload["agents"].values()]
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=Path("scenarios/office.yaml"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[bool, list[dict[str, list[float]]]] = {True: [], False: []}
    for _ in range(args.runs):
        for live in (True, False):
            results[live].append(one_run(args.scenario, live))
    print(f"{args.scenario}, {args.runs} runs per mode (alternating), medians over runs of the per-run figure")
    for live in (True, False):
        runs = results[live]
        print(f"live view {'on ' if live else 'off'}:")
        for name, per_run in (
            ("sender pacing p99, worst direction (ms)", [max(r["pacing_p99_ms"]) for r in runs]),
            ("packets > 1 ms late, all directions", [sum(r["late_over_1ms"]) for r in runs]),
            ("engine releases > 1 ms late", [sum(r["engine_late"]) for r in runs]),
            ("agents' CPU (s)", [sum(r["agent_cpu_s"]) for r in runs]),
        ):
            print(f"  {name:42s} {statistics.median(per_run):8.2f}  ({min(per_run):.2f}-{max(per_run):.2f})")


if __name__ == "__main__":
    main()
