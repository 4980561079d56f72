"""Kernel netem with real packets: delay and jitter, random loss, Gilbert-Elliott bursts, direction.

Each test builds the default lab (client --lan-- router --wan-- gateway) with netem on the wan link
and sends a paced probe stream (``testbed.lab.measure``) through it. Settings on the router's end of
``wan`` act on client -> gateway, the gateway's end on gateway -> client. These run natively where the
kernel has sch_netem and otherwise in the stock-kernel VM (see conftest.py), where Python is ~25x
slower: rates stay at <= 1000 packets/s, which the sender holds there (measured), and counts are what
the statistics need, so each test takes seconds.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from testbed.lab import Lab, measure
from testbed.lab.measure import ProbeStream, probe_stream
from testbed.lab.reach import udp_probe
from testbed.lab.registry import Registry
from testbed.scenario.model import Scenario
from tests.helpers.stats import binomial_interval

pytestmark = pytest.mark.netem

_RUN_MEASURE = f"import runpy; runpy.run_path({str(Path(measure.__file__))!r}, run_name='__main__')"


class _ScriptStart:
    """A node whose probe processes run ``measure.py`` as a script (stdlib + numpy) rather than as
    ``-m testbed.lab.measure``, which first imports the ``testbed.lab`` package (pyroute2, pydantic):
    15-30 s per process under TCG, while the receiver gives up 30 s after "ready" without a packet."""

    def __init__(self, node):
        self.node = node

    def __getattr__(self, name: str):  # anything else (e.g. the node's python) is the node's own
        return getattr(self.node, name)

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        if argv[1:3] == ["-m", "testbed.lab.measure"]:
            argv = [argv[0], "-c", _RUN_MEASURE, *argv[3:]]
        return self.node.popen(argv, **kwargs)


def netem_lab(links: dict, registry: Registry) -> Lab:
    return Lab(Scenario.model_validate({"name": "netem", "links": links}), registry=registry)


def stream(lab: Lab, sender: str, receiver: str, workdir: Path, **kwargs) -> ProbeStream:
    """Under TCG, resolving the path's neighbours takes long enough that the stream's first packets
    would be dropped waiting for ARP: resolve them first (``settle``), then warm the path up."""
    settle(lab, sender, receiver)
    return probe_stream(
        _ScriptStart(lab.node(sender)),
        _ScriptStart(lab.node(receiver)),
        str(lab.plan.address(receiver)),
        workdir,
        warmup=True,
        **kwargs,
    )


def settle(lab: Lab, sender: str, receiver: str, attempts: int = 5) -> None:
    """Send datagrams until one arrives: netem drops ARP too, so on a lossy egress the neighbour
    resolution itself can lose its first reply (10% of the time at 10% loss) and the kernel retries
    only a second later, dropping the stream's first packets meanwhile. A datagram that arrives means
    every hop has resolved its next one."""
    address = str(lab.plan.address(receiver))
    for _ in range(attempts):
        if udp_probe(lab.node(sender).netns_path, lab.node(receiver).netns_path, address, timeout=2.0).received:
            return
    raise AssertionError(f"{sender} -> {receiver}: no datagram arrived in {attempts} probes")


def leaf_qdisc(lab: Lab, node: str) -> str:
    """What sits on ``node``'s egress of wan (to be sure the kernel's netem does the work)."""
    return lab.node(node).run(["tc", "qdisc", "show", "dev", "wan"]).stdout


def packets_for_burst_mean(p: float, r: float, tolerance: float, z: float) -> int:
    """Packets needed so that the mean loss-burst length of the simple Gilbert model (loss 100% in bad,
    0% in good) is within ``tolerance`` (relative) of 1/r with a margin of ``z`` standard errors.

    Bursts are the runs of the bad state: geometric with mean 1/r and variance (1-r)/r^2, so the mean of
    B bursts has relative standard error sqrt((1-r)/B): B >= z^2 (1-r) / tolerance^2. A burst starts at a
    good packet that turns bad, pi_good * p per packet with pi_good = r / (p+r)."""
    bursts = z * z * (1 - r) / tolerance**2
    return math.ceil(bursts / (r / (p + r) * p))


def test_delay_with_normal_jitter(registry, no_leftovers, tmp_path):
    """50 ms +- 10 ms normal jitter: median one-way delay 50 +- 1 ms, spread ~10 ms, nothing lost.
    6000 packets: the median's standard error is 1.25 * 10 / sqrt(6000) = 0.16 ms."""
    links = {"wan": {"router": {"delay": "50ms", "jitter": "10ms", "jitter_distribution": "normal"}}}
    with netem_lab(links, registry) as lab:
        assert "netem" in leaf_qdisc(lab, "router")
        probes = stream(lab, "client", "gateway", tmp_path, pps=1000, count=6000)
    delays = probes.delays_ms
    median = float(np.median(delays))
    sigma = float(np.percentile(delays, 84.13) - np.percentile(delays, 15.87)) / 2
    print(
        f"delay: median {median:.3f} ms, sigma (16-84 percentile) {sigma:.2f} ms, loss {probes.loss_rate:.4f}, "
        f"reordered {probes.reordered}"
    )
    assert probes.loss_rate == 0
    assert median == pytest.approx(50, abs=1), f"median one-way delay {median:.3f} ms"
    assert sigma == pytest.approx(10, abs=2), f"jitter (16-84 percentile half-width) {sigma:.2f} ms"


def test_random_loss_within_binomial_interval(registry, no_leftovers, tmp_path):
    """5% random loss over 5000 packets: the lost count lies in the 99.99% interval of Binomial(5000, 5%)
    (a 99% interval would fail one CI run in a hundred by chance alone)."""
    count = 5000
    with netem_lab({"wan": {"router": {"loss": "5%"}}}, registry) as lab:
        assert "netem" in leaf_qdisc(lab, "router")
        probes = stream(lab, "client", "gateway", tmp_path, pps=1000, count=count)
    lost = int(count - probes.received.sum())
    lo, hi = binomial_interval(count, 0.05)
    print(f"random loss: {lost}/{count} = {lost / count:.4f}, 99.99% interval [{lo / count:.4f}, {hi / count:.4f}]")
    assert lo <= lost <= hi, f"{lost} of {count} lost; 99.99% binomial interval [{lo}, {hi}]"


def test_gilbert_elliott_burst_length(registry, no_leftovers, tmp_path):
    """Gilbert-Elliott p=5%, r=25%, loss 100% bad / 0% good: mean burst length within 15% of 1/r = 4.

    p=5% rather than 1%: a burst starts every ~24 packets instead of every ~104, so the ~410 bursts the
    statistics need (3.5 standard errors inside 15%) take ~9800 packets (10 s) instead of ~42500."""
    p, r = 0.05, 0.25
    count = packets_for_burst_mean(p, r, tolerance=0.15, z=3.5)
    links = {
        "wan": {
            "router": {
                "loss": {"model": "gilbert_elliott", "p": "5%", "r": "25%", "loss_bad": "100%", "loss_good": "0%"}
            }
        }
    }
    with netem_lab(links, registry) as lab:
        assert "gemodel" in leaf_qdisc(lab, "router")
        probes = stream(lab, "client", "gateway", tmp_path, pps=1000, count=count)
    bursts = probes.loss_bursts()
    mean = float(bursts.mean()) if len(bursts) else 0.0
    stationary = p / (p + r)
    print(
        f"gilbert-elliott: {count} packets, {len(bursts)} bursts, mean length {mean:.3f} (theory {1 / r:g}), "
        f"loss {probes.loss_rate:.4f} (theory {stationary:.4f})"
    )
    assert len(bursts) >= 300, f"only {len(bursts)} loss bursts"
    assert mean == pytest.approx(1 / r, rel=0.15), f"mean burst length {mean:.3f}, theory {1 / r:g}"
    # the bad-state share of a two-state chain has sd sqrt(pi_g pi_b (2-p-r)/(p+r) / n) = 0.0084 here
    assert probes.loss_rate == pytest.approx(stationary, rel=0.2)


def test_asymmetric_settings_apply_to_their_direction(registry, no_leftovers, tmp_path):
    """30 ms on the router's egress (client -> gateway), 10% loss on the gateway's (gateway -> client):
    each direction gets its own setting and none of the other's."""
    links = {"wan": {"router": {"delay": "30ms"}, "gateway": {"loss": "10%"}}}
    with netem_lab(links, registry) as lab:
        assert "delay 30ms" in leaf_qdisc(lab, "router") and "loss" not in leaf_qdisc(lab, "router")
        assert "loss 10%" in leaf_qdisc(lab, "gateway") and "delay" not in leaf_qdisc(lab, "gateway")
        upstream = stream(lab, "client", "gateway", tmp_path, pps=500, count=1000)
        downstream = stream(lab, "gateway", "client", tmp_path, pps=1000, count=3000, port=5003)
    up, down = float(np.median(upstream.delays_ms)), float(np.median(downstream.delays_ms))
    lost = int(downstream.count - downstream.received.sum())
    lo, hi = binomial_interval(downstream.count, 0.10)
    print(
        f"asymmetric: client->gateway median {up:.3f} ms loss {upstream.loss_rate:.4f}; "
        f"gateway->client median {down:.3f} ms loss {lost}/{downstream.count} (99.99% interval [{lo}, {hi}])"
    )
    assert up == pytest.approx(30, abs=1)
    assert upstream.loss_rate <= 0.002, "the gateway's loss leaked into client -> gateway"
    assert down < 2, "the router's delay leaked into gateway -> client"
    assert lo <= lost <= hi, f"{lost} of {downstream.count} lost on gateway -> client; 99.9% interval [{lo}, {hi}]"
