"""Benchmark: what each shipped router template does for voice behind a flooded bottleneck.

The router's upstream is shaped to 10 Mbit; an unmarked UDP flood at 2.5x that rate runs from client
to gateway while a 50 packets/s EF stream (one direction of a call, 200-byte packets) crosses the same
link. Prints the EF stream's loss and one-way delay percentiles per template, and the flood's goodput
(what the design leaves the other traffic). The flood's source port (20001) lies inside 10000-60000, as
ephemeral ports often do; the scenario's edge.media_prefix is a documentation prefix (203.0.113.0/24)
the flood does not go to, so media-prefix.yaml keeps it in bulk (a port match alone would not).
Templates whose qdisc the kernel lacks (cake, fq_codel, prio on this CI's kernel) are listed as such.
Usage: sudo .venv/bin/python bench/qos_priority.py [--seconds 20] [--templates fifo,ef-priority,...]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path

import numpy as np

from testbed.errors import CapabilityError
from testbed.lab import Lab
from testbed.lab.measure import ProbeStream, probe_stream
from testbed.scenario.load import load_template
from testbed.scenario.model import Scenario
from testbed.scenario.router_template import RouterTemplate

REPO = Path(__file__).resolve().parents[1]
FLOOD_PACKET = 1200


def measure(template_name: str, seconds: float) -> None:
    links = {"wan": {"router": {"rate": "10mbit"}}}
    edge = {"media_prefix": "203.0.113.0/24"}
    scenario = Scenario.model_validate({"name": "qos", "links": links, "edge": edge})
    template = load_template(REPO / "scenarios" / "routers" / f"{template_name}.yaml")
    flooded: list[ProbeStream] = []
    try:
        voice = _run(scenario, template, seconds, flooded)
    except CapabilityError as exc:
        print(f"{template_name:<22} not on this kernel: {str(exc).split(':')[0]}")
        return
    delays = voice.delays_ms
    p50, p95, p99 = np.percentile(delays, [50, 95, 99]) if len(delays) else (np.nan,) * 3
    goodput = _goodput_mbit(flooded[0]) if flooded else np.nan
    print(
        f"{template_name:<22} {voice.loss_rate:>7.1%} {p50:>9.2f} {p95:>9.2f} {p99:>9.2f} {goodput:>11.2f} "
        f"{sorted(set(voice.dscp[voice.received].tolist()))}"
    )


def _goodput_mbit(flood: ProbeStream) -> float:
    """The flood's wire rate at the receiver, over the span its packets arrived in."""
    arrived = np.sort(flood.recv_ns[flood.received])
    if arrived.size < 2:
        return 0.0
    return float((arrived.size - 1) * (FLOOD_PACKET + 42) * 8 / ((arrived[-1] - arrived[0]) / 1e9) / 1e6)


def _run(scenario: Scenario, template: RouterTemplate, seconds: float, flooded: list[ProbeStream]) -> ProbeStream:
    with (
        Lab(scenario, router_template=template, purpose="bench qos_priority") as lab,
        tempfile.TemporaryDirectory() as workdir,
    ):
        client, gateway, address = lab.node("client"), lab.node("gateway"), str(lab.plan.address("gateway"))
        flood_pps = 2.5 * 10e6 / ((FLOOD_PACKET + 42) * 8)
        flood = threading.Thread(
            target=lambda: flooded.append(
                probe_stream(
                    client,
                    gateway,
                    address,
                    Path(workdir),
                    pps=flood_pps,
                    count=int(flood_pps * (seconds + 2)),
                    size=FLOOD_PACKET,
                    port=5001,
                    source_port=20001,  # inside 10000-60000, as ephemeral ports often are
                    idle=1.0,
                )
            )
        )
        flood.start()
        voice = probe_stream(
            client, gateway, address, Path(workdir), pps=50, count=int(50 * seconds), size=200, dscp=46, port=20000
        )
        flood.join()
    return voice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--templates",
        default="fifo,ef-priority,ef-priority-shallow,strict-priority,llq-policed,media-prefix,dscp-bleach,"
        "multi-class,simple-qos,sqm-fq-codel,sqm-cake,sqm-prio",
    )
    args = parser.parse_args()
    print(f"EF stream, 50 pps, behind 10 Mbit flooded at 25 Mbit for {args.seconds:g} s")
    print(f"{'template':<22} {'loss':>7} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'bulk Mbit':>11} dscp received")
    for name in args.templates.split(","):
        measure(name, args.seconds)


if __name__ == "__main__":
    main()
