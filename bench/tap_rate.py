"""Benchmark: how many packets per second the packet tap keeps up with, and what it costs in CPU.

For each offered rate, paced senders in the gateway send small RTP-looking UDP datagrams (12-byte RTP
header + 20 bytes) to the router for a few seconds; a tap (``python -m testbed.media.tap``, as runs
use it) captures them on the router's wan side. Prints per rate: the rate the tap saw (from its own
kernel timestamps), the packets it captured and the ones its ring dropped, its CPU seconds per 100k
packets and its share of one core; then the highest rate it sustained with 0 drops. The senders pace in
1 ms steps and may fall short of the offered rate on a small host: the achieved rate is what counts.
Figures only: nothing here asserts a timing.
Usage: sudo .venv/bin/python bench/tap_rate.py [--rates 25000,50000,100000,150000,200000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from testbed.lab import Lab
from testbed.media.tap import load_records, tap_command
from testbed.scenario.model import Scenario

TICKS = os.sysconf("SC_CLK_TCK")
PORT = 20000

# Paced in 1 ms steps: each step sends its share of packets at once, then sleeps until the next one.
SENDER = r"""
import errno, socket, struct, sys, time
address, port, ssrc = sys.argv[1], int(sys.argv[2]), int(sys.argv[5])
rate, seconds = float(sys.argv[3]), float(sys.argv[4])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.IPPROTO_IP, 11, 1)  # IP_RECVERR: ENOBUFS instead of a silent drop
sock.connect((address, port))
send, sent, start = sock.send, 0, time.perf_counter()
while (now := time.perf_counter() - start) < seconds:
    due = int(rate * min(now + 0.001, seconds))
    while sent < due:
        try:
            send(struct.pack("!BBHII", 0x80, 96, sent % 65536, sent, ssrc) + b"\x55" * 20)
            sent += 1
        except OSError as error:
            if error.errno != errno.ENOBUFS:
                raise
    pause = start + now + 0.001 - time.perf_counter()
    if pause > 0:
        time.sleep(pause)
print(sent, flush=True)
"""
SINK = r"""
import socket, sys, time
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
time.sleep(3600)
"""


def wait_ready(process: subprocess.Popen[str], what: str) -> None:
    line = process.stdout.readline() if process.stdout else ""
    if "ready" not in line:
        raise SystemExit(f"{what} did not start: {line.strip() or process.wait()}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def measure(lab: Lab, rate: int, seconds: float, senders: int, workdir: Path) -> tuple[float, int]:
    """One rate through a fresh tap; prints its line, returns (achieved rate, drops)."""
    router = str(lab.plan.address("router", "wan"))
    prefix = workdir / f"tap-{rate}"
    tap = lab.node("router").popen(tap_command("wan", prefix), stdout=subprocess.PIPE, text=True)
    wait_ready(tap, "the tap")
    cpu_ready = cpu_seconds(tap.pid)
    blasts = [
        lab.node("gateway").popen(
            [sys.executable, "-c", SENDER, router, str(PORT), str(rate / senders), str(seconds), str(0xBE00 + i)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(senders)
    ]
    sent = sum(int(blast.communicate(timeout=seconds + 120)[0]) for blast in blasts)
    time.sleep(0.5)  # the last datagrams through the receiving softirq
    tap.send_signal(signal.SIGTERM)
    out, _ = tap.communicate(timeout=120)
    done = json.loads(out.strip().splitlines()[-1])
    captured = done["packets"] + done["rtcp"] + done["other"]
    cpu = done["cpu_seconds"] - cpu_ready  # capture, parse, pcap, records file; not the start-up
    times = load_records(prefix).time_ns
    span = (times.max() - times.min()) / 1e9 if len(times) > 1 else float("nan")
    achieved = captured / span if span > 0 else float("nan")
    per_100k = cpu / captured * 100_000 if captured else float("nan")
    share = cpu / span if span > 0 else float("nan")
    print(
        f"{rate:>8} {achieved:>9.0f} {sent:>9} {captured:>9} {done['dropped']:>7} {per_100k:>9.3f} {share:>6.0%}"
        f" {done['ring_frames']:>7}",
        flush=True,
    )
    return achieved, int(done["dropped"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="25000,50000,100000,150000,200000")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--senders", type=int, default=2, help="sender processes (one per core is plenty)")
    args = parser.parse_args()
    print("tap on the router's wan side; 32-byte RTP-looking UDP datagrams from the gateway")
    print(
        f"{'offered':>8} {'seen/s':>9} {'sent':>9} {'captured':>9} {'dropped':>7} {'cpu/100k':>9} {'cpu':>6}"
        f" {'ring':>7}"
    )
    clean: list[float] = []
    with Lab(Scenario.model_validate({"name": "bench"}), purpose="bench tap_rate") as lab:
        sink = lab.node("router").popen([sys.executable, "-c", SINK, str(PORT)], stdout=subprocess.PIPE, text=True)
        try:
            wait_ready(sink, "the sink")
            with tempfile.TemporaryDirectory() as workdir:
                for rate in (int(r) for r in args.rates.split(",")):
                    achieved, dropped = measure(lab, rate, args.seconds, args.senders, Path(workdir))
                    if dropped == 0 and not np.isnan(achieved):
                        clean.append(achieved)
        finally:
            sink.kill()
            sink.wait()
    best = f"{max(clean):.0f} packets/s" if clean else "none of the rates"
    print(f"sustained with 0 drops: {best} (cpu/100k: tap CPU seconds per 100k packets captured)")


if __name__ == "__main__":
    main()
