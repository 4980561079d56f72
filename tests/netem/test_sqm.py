"""Smart queues where the kernel has them (stock kernels; here the stock-kernel VM, with the netem tests):
fq_codel, cake diffserv4 and prio behind a 1.5 Mbit bottleneck flooded at twice its rate by iperf3 (a
compiled sender: Python is ~25x slower under TCG), against fifo in the same run. EF must lose nothing
and wait far less than behind fifo; relations, not absolute milliseconds, since TCG's timing is loose.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from testbed.lab import Lab
from testbed.lab.registry import Registry
from testbed.scenario.load import load_template
from testbed.scenario.model import Scenario
from tests.helpers import REPO, require
from tests.netem.test_netem import stream

pytestmark = pytest.mark.netem

RATE = "1500kbit"
FLOOD_BPS = "3M"


def ef_under_flood(template: str, registry: Registry, workdir) -> tuple[float, float]:
    """EF loss and p95 one-way delay (ms) of a 50 packets/s stream while iperf3 floods the uplink."""
    scenario = Scenario.model_validate({"name": "sqm", "links": {"wan": {"router": {"rate": RATE}}}})
    router = load_template(REPO / "scenarios" / "routers" / f"{template}.yaml")
    with Lab(scenario, registry=registry, router_template=router) as lab:
        gateway = str(lab.plan.address("gateway"))
        server = lab.node("gateway").popen(["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL)
        try:
            udp = ["-u", "-b", FLOOD_BPS, "-l", "1200", "-t", "25", "--connect-timeout", "20000"]
            flood = lab.node("client").popen(["iperf3", "-c", gateway, *udp], stdout=subprocess.DEVNULL)
            try:
                probes = stream(lab, "client", "gateway", workdir, pps=50, count=400, dscp=46, port=20000)
            finally:
                flood.terminate()
                flood.wait(timeout=60)
        finally:
            server.kill()
            server.wait(timeout=30)
    return probes.loss_rate, float(np.percentile(probes.delays_ms, 95))


def test_smart_queues_keep_ef_fast_under_a_flood(registry, no_leftovers, tmp_path):
    require("iperf3", shutil.which("iperf3") is not None, "Debian's iperf3 (make setup installs it)")
    fifo_loss, fifo_p95 = ef_under_flood("fifo", registry, tmp_path)
    print(f"fifo: EF loss {fifo_loss:.1%}, p95 {fifo_p95:.1f} ms")
    for template in ("sqm-fq-codel", "sqm-cake", "sqm-prio"):
        loss, p95 = ef_under_flood(template, registry, tmp_path)
        print(f"{template}: EF loss {loss:.1%}, p95 {p95:.1f} ms")
        assert loss == 0, f"{template}: {loss:.1%} of EF lost"
        assert p95 < fifo_p95 / 4, f"{template}: EF p95 {p95:.1f} ms against fifo's {fifo_p95:.1f} ms"
