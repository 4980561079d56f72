"""Benchmark: how many packets per second the userspace impairment engine sustains, and how precisely.

For each rate, a paced stream of 200-byte UDP packets crosses a link with 20 ms +- 5 ms of normal jitter
done by the engine. Prints offered and delivered packets per second, the engine's scheduling error
(verdict time minus due time: p50, p99, max), its CPU (share of one core) and the kernel queue's drops.
Target (issue 8): >= 10k pps at p99 < 1 ms.
Usage: sudo .venv/bin/python bench/impair_engine.py [--rates 1000,5000,10000,15000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from testbed.lab import Lab
from testbed.lab.measure import probe_stream
from testbed.scenario.model import Scenario

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def measure(rate: int, seconds: float) -> None:
    scenario = Scenario.model_validate(
        {
            "name": "bench",
            "impairment_engine": "userspace",
            "links": {"wan": {"router": {"delay": "20ms", "jitter": "5ms", "flow_order": "jitter"}}},
        }
    )
    with Lab(scenario, purpose="bench impair_engine") as lab, tempfile.TemporaryDirectory() as workdir:
        engine = lab.engines[("router", "wan")]
        cpu_before, started = cpu_seconds(engine.process.pid), time.monotonic()
        stream = probe_stream(
            lab.node("client"),
            lab.node("gateway"),
            str(lab.plan.address("gateway")),
            Path(workdir),
            pps=rate,
            count=int(rate * seconds),
            size=200,
        )
        cpu = (cpu_seconds(engine.process.pid) - cpu_before) / (time.monotonic() - started)
    stats = lab.engine_stats["wan@router"]
    sent_span = (stream.send_ns.max() - stream.send_ns.min()) / 1e9
    kernel = stats.get("kernel", {})
    print(
        f"{rate:>7} {stream.count / sent_span:>9.0f} {stream.received.sum() / sent_span:>9.0f} "
        f"{stream.loss_rate:>6.2%} {stats['late_p50_ms']:>7.3f} {stats['late_p99_ms']:>7.3f} "
        f"{stats['late_max_ms']:>7.2f} {cpu:>6.0%} {kernel.get('queue_dropped', '?'):>6} "
        f"{kernel.get('user_dropped', '?'):>6}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,5000,10000,15000")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print("userspace engine, 200-byte UDP, 20 ms +- 5 ms normal jitter; scheduling error = verdict - due time")
    print(
        f"{'offered':>7} {'sent/s':>9} {'recv/s':>9} {'loss':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'cpu':>6} {'qdrop':>6} {'udrop':>6}"
    )
    for rate in (int(r) for r in args.rates.split(",")):
        measure(rate, args.seconds)


if __name__ == "__main__":
    main()
