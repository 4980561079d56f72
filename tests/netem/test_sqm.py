"""Smart queues where the kernel has them (stock kernels; here the stock-kernel VM, with the netem tests):
fq_codel, cake diffserv4 and prio behind a 1.5 Mbit bottleneck flooded at twice its rate by iperf3 (a
compiled sender: Python is ~25x slower under TCG), against fifo in the same run. EF must lose nothing
and wait far less than behind fifo; relations, not absolute milliseconds, since TCG's timing is loose.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from testbed.lab import Lab, iptables
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


def test_tc_polices_a_priority_class_where_the_kernel_has_it(registry, no_leftovers, tmp_path):
    """llq-policed on a stock kernel: tc's police action (not iptables' hashlimit) holds EF to 30% of the
    link. EF sent at 80% of the link by iperf3 loses most of what is above 30%; an EF stream within the
    rate loses nothing."""
    require("iperf3", shutil.which("iperf3") is not None, "Debian's iperf3 (make setup installs it)")
    scenario = Scenario.model_validate({"name": "llq", "links": {"wan": {"router": {"rate": RATE}}}})
    router = load_template(REPO / "scenarios" / "routers" / "llq-policed.yaml")
    with Lab(scenario, registry=registry, router_template=router) as lab:
        gateway = str(lab.plan.address("gateway"))
        filters = lab.node("router").run(["tc", "filter", "show", "dev", "wan"]).stdout
        chain = lab.node("router").run([iptables.IPTABLES, "-t", "mangle", "-S", "vtb-qos"]).stdout
        within = stream(lab, "client", "gateway", tmp_path, pps=50, count=300, dscp=46, port=20000)
        server = lab.node("gateway").popen(["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL)
        try:
            udp = ["-u", "-b", "1200K", "-l", "1000", "-t", "8", "-S", "184", "-J", "--connect-timeout", "20000"]
            report = lab.node("client").run(["iperf3", "-c", gateway, *udp], timeout=120).stdout
        finally:
            server.kill()
            server.wait(timeout=30)
        stats = lab.node("router").run(["tc", "-s", "filter", "show", "dev", "wan"]).stdout
    lost = json.loads(report)["end"]["sum"]["lost_percent"]
    print(f"tc police: EF within its rate loss {within.loss_rate:.1%}; EF at 1.2 Mbit lost {lost:.0f}%")
    assert "police" in filters and "hashlimit" not in chain, (filters, chain)
    assert within.loss_rate == 0
    assert 40 < lost < 80, f"EF at 80% of the link against a 30% policer: {lost:.0f}% lost"
    assert "overlimits" in stats, stats
