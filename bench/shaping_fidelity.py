"""Benchmark: configured vs measured link behaviour (rate, delay, jitter, loss, loss bursts).

Each row builds the 3-node lab with one setting on the router's upstream (wan) egress, sends a paced UDP
probe stream across it and prints what arrived. Delay and loss use the impairment engine `auto` picks
(kernel netem where present, else the userspace engine); `--engine` forces one.
Usage: sudo .venv/bin/python bench/shaping_fidelity.py [--engine auto|netem|userspace] [--packets 5000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from testbed.lab import Lab
from testbed.lab.measure import ProbeStream, probe_stream
from testbed.scenario.model import Scenario

WIRE_OVERHEAD = 8 + 20 + 14  # UDP + IPv4 + Ethernet, as HTB counts on a veth


def run(settings: dict, engine: str, **probe) -> tuple[ProbeStream, str]:
    scenario = Scenario.model_validate(
        {"name": "fidelity", "impairment_engine": engine, "links": {"wan": {"router": settings}}}
    )
    with Lab(scenario, purpose="bench shaping_fidelity") as lab, tempfile.TemporaryDirectory() as workdir:
        used = "userspace" if lab.engines else ("netem" if lab.kernel_netem else "htb")
        stream = probe_stream(
            lab.node("client"), lab.node("gateway"), str(lab.plan.address("gateway")), Path(workdir), **probe
        )
    return stream, used


def goodput(stream: ProbeStream, size: int) -> float:
    arrivals = np.sort(stream.recv_ns[stream.received])
    return (len(arrivals) - 1) * (size + WIRE_OVERHEAD) * 8 / ((arrivals[-1] - arrivals[0]) / 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="auto", choices=["auto", "netem", "userspace"])
    parser.add_argument("--packets", type=int, default=5000)
    args = parser.parse_args()
    n = args.packets
    print(f"{'setting':<34} {'engine':<10} {'configured':<22} measured")
    for rate in ("1mbit", "10mbit", "50mbit"):
        bits = {"1mbit": 1e6, "10mbit": 10e6, "50mbit": 50e6}[rate]
        size = 1200
        pps = 2 * bits / ((size + WIRE_OVERHEAD) * 8)  # offer twice the rate
        stream, used = run({"rate": rate, "queue_limit": 100_000}, args.engine, pps=pps, count=int(pps * 3), size=size)
        print(f"{'rate ' + rate:<34} {used:<10} {rate:<22} {goodput(stream, size) / 1e6:.3f} Mbit/s")
    stream, used = run({"delay": "50ms", "jitter": "10ms", "flow_order": "jitter"}, args.engine, pps=1000, count=n)
    d = stream.delays_ms
    print(
        f"{'delay 50ms jitter 10ms normal':<34} {used:<10} {'median 50, sd 10 ms':<22} "
        f"median {np.median(d):.2f}, sd {np.std(d):.2f}, p1 {np.percentile(d, 1):.1f}, "
        f"p99 {np.percentile(d, 99):.1f} ms"
    )
    stream, used = run({"delay": "50ms", "jitter": "10ms"}, args.engine, pps=50, count=min(n, 1500))
    d = stream.delays_ms
    print(
        f"{'  same, flow order kept, 50 pps':<34} {used:<10} {'(userspace default)':<22} "
        f"median {np.median(d):.2f}, sd {np.std(d):.2f} ms, reordered {stream.reordered}"
    )
    stream, used = run({"loss": "5%"}, args.engine, pps=2000, count=n)
    half = 2.576 * np.sqrt(0.05 * 0.95 / n)
    print(f"{'loss 5% random':<34} {used:<10} {f'5% (99%: ±{half:.2%})':<22} {stream.loss_rate:.2%}")
    stream, used = run(
        {"loss": {"model": "gilbert_elliott", "p": "5%", "r": "25%"}}, args.engine, pps=2000, count=2 * n
    )
    bursts = stream.loss_bursts()
    print(
        f"{'loss gilbert_elliott p 5% r 25%':<34} {used:<10} {'16.7%, bursts 4.00':<22} "
        f"{stream.loss_rate:.2%}, bursts {np.mean(bursts):.2f} ({len(bursts)} bursts)"
    )


if __name__ == "__main__":
    main()
