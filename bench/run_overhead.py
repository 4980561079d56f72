"""Benchmark: where a run's time goes, per variant and per phase, and the ratio of the command's whole
wall time (process start to exit, as `time testbed run` sees it) to variants x the workload's duration.

Phases per variant (from workload.json's ``phases``): lab_up (nodes, links, shaping, router template,
impairment engines), agents_ready (agents started, endpoints prepared, taps), workload (t0 to the
scenario's last action), drain (calls hanging up), collect (records, agents closed), teardown; for the
command: start-up (process start to its first line), scoring, reports (from its progress lines).
Targets (speed issue): ratio <= 1.15 on the office demo, lab up + agents ready <= 0.5 s, teardown <= 0.3 s.
Usage: sudo .venv/bin/python bench/run_overhead.py [--scenario scenarios/office.yaml] [--runs 3] [--backend B]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = ("lab_up", "agents_ready", "workload", "drain", "collect", "teardown")
LINE = re.compile(r"^\s*(\d+\.\d)s (.*)$")


def one_run(scenario: Path, backend: str | None, extra: list[str]) -> dict:
    """Run the command once; its wall time, the arrival of its progress lines, each variant's phases."""
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "testbed.cli", "run", str(scenario), "--out", str(out), *extra]
        if backend:
            command += ["--backend", backend]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[tuple[float, str]] = []
        assert process.stderr is not None
        for line in process.stderr:
            lines.append((time.perf_counter() - started, line.rstrip()))
        process.wait()
        wall = time.perf_counter() - started
        if process.returncode not in (0, 1):
            raise SystemExit(f"testbed run failed ({process.returncode}): {lines[-3:]}")
        run = json.loads((out / "run.json").read_text())
        variants = {}
        for entry in run["runs"]:
            workload = json.loads((out / entry["name"] / "workload.json").read_text())
            variants[entry["name"]] = {"duration": workload["duration"], **workload["phases"]}
    first = lines[0][0] if lines else wall
    scoring = next((t for t, text in lines if text.endswith(" scoring")), wall)
    reports = next((t for t, text in lines if "writing the reports" in text), wall)
    return {
        "wall": wall,
        "startup": first,
        "scoring": reports - scoring,
        "reports": wall - reports,
        "variants": variants,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=Path("scenarios/office.yaml"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", default=None)
    parser.add_argument("extra", nargs="*", help="more `testbed run` options, after --")
    args = parser.parse_args()
    runs = [one_run(args.scenario, args.backend, args.extra) for _ in range(args.runs)]

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):7.3f} s  ({min(values):.3f}-{max(values):.3f})"

    names = list(runs[0]["variants"])
    print(f"{args.scenario} ({args.backend or 'netns'} backend), {args.runs} runs: median (min-max)")
    for name in names:
        print(f"variant {name}:")
        for phase in PHASES:
            print(f"  {phase:14s}{spread([r['variants'][name].get(phase, float('nan')) for r in runs])}")
        ready = [r["variants"][name]["lab_up"] + r["variants"][name]["agents_ready"] for r in runs]
        print(f"  {'up + ready':14s}{spread(ready)}")
    for what in ("startup", "scoring", "reports", "wall"):
        print(f"{what:16s}{spread([r[what] for r in runs])}")
    workload = sum(runs[0]["variants"][name]["duration"] for name in names)
    ratios = [r["wall"] / workload for r in runs]
    print(f"variants x workload {workload:.1f} s; ratio wall / that: {spread(ratios).replace(' s ', '   ')}")


if __name__ == "__main__":
    main()
