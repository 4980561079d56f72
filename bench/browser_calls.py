"""Benchmark: how many browser calls one machine carries, and what one costs.

For each N, N concurrent Opus calls run from a headless Chromium on the client (one browser per call,
`endpoint: {from: chromium}`) to the aiortc gateway over an idle, unimpaired link, through the public API
(`testbed.load` -> lab -> workload -> `testbed.score`). While the calls run, a sampler reads /proc every
--interval for the processes in the lab's namespaces that are Chromium (browser, renderers, GPU, utility,
crashpad) or its Playwright driver (node): CPU from utime+stime deltas, RSS and PSS summed.

Prints, per N: connected calls; browser CPU in cores while every call is up (total and per call) and in
CPU-seconds per call from launch to close (launch included; a process's last < interval before it exits
is not seen); peak RSS (and PSS, which counts pages shared between the browsers once) in MB; launch and
setup time (median/max over the browser legs); median PESQ of each direction; the aiortc agents' cores
and the whole host's busy cores while the calls are up (other work on the machine shows there). Then the
core count and an estimate of how many browser calls fit. Everything runs in a temporary directory; at
the end the script checks that no Chromium or Playwright process is left.
Usage: sudo .venv/bin/python bench/browser_calls.py [--counts 1,2,4] [--duration 20]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

import testbed
from testbed.results import SCORES_FILE, VariantScores
from testbed.results.workload import WORKLOAD_FILE, WorkloadRecord

CPU_LIMIT = 0.7  # share of the machine's cores the estimate allows the browsers
MEMORY_LIMIT = 0.8  # share of MemTotal
PESQ_LIMIT = 3.8
DIRECTIONS = ("client->gateway", "gateway->client")
TICK = os.sysconf("SC_CLK_TCK")
MB = 1024 * 1024


def is_browser(exe: str) -> bool:
    """Chromium's own binaries (/usr/lib/chromium/chromium, chrome_crashpad_handler) or Playwright's node."""
    return "chrom" in os.path.basename(exe) or "/chromium/" in exe or "/playwright/" in exe


def browser_pids(namespaces: set[int] | None = None) -> list[int]:
    """Browser processes whose network namespace is one of ``namespaces`` (inode numbers; None: any)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            inode = os.stat(f"/proc/{entry.name}/ns/net").st_ino
            if (namespaces is None or inode in namespaces) and is_browser(os.readlink(f"/proc/{entry.name}/exe")):
                pids.append(int(entry.name))
        except OSError:  # gone, or a kernel thread
            continue
    return pids


def host_busy_ticks() -> int:
    """Busy jiffies of all cores together (everything but idle and iowait), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]


class Sampler(threading.Thread):
    """Every ``interval``: cumulative CPU seconds of the browser processes since the sampler started,
    their summed RSS and PSS, and the host's busy jiffies. A process is known by (pid, start time), so
    a reused pid is a new process; one already running at the first sample counts from there."""

    def __init__(self, namespaces: set[int], interval: float):
        super().__init__(name="browser sampler", daemon=True)
        self.namespaces, self.interval = namespaces, interval
        self.ticks: dict[tuple[int, int], tuple[int, int]] = {}  # process -> (first ticks, last ticks)
        self.samples: list[tuple[float, float, int, int, int]] = []  # (time, cpu s, rss, pss, host ticks)
        self.stopping = threading.Event()

    def sample(self) -> None:
        rss = pss = 0
        for pid in browser_pids(self.namespaces):
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{pid}/smaps_rollup") as rollup:
                    sizes = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in rollup if "kB" in line}
            except OSError:
                continue
            used, key = int(fields[11]) + int(fields[12]), (pid, int(fields[19]))
            first = self.ticks[key][0] if key in self.ticks else (used if not self.samples else 0)
            self.ticks[key] = (first, used)
            rss, pss = rss + sizes.get("Rss", 0), pss + sizes.get("Pss", 0)
        cpu = sum(last - first for first, last in self.ticks.values()) / TICK
        self.samples.append((time.time(), cpu, rss, pss, host_busy_ticks()))

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.join()
        self.sample()

    def cores(self, start: float, end: float) -> tuple[float, float]:
        """(browser cores, host busy cores) on average between two epoch times."""
        times, cpu, *_, host = (np.array(column, dtype=float) for column in zip(*self.samples, strict=True))
        seconds = end - start
        browser = (np.interp(end, times, cpu) - np.interp(start, times, cpu)) / seconds
        return browser, (np.interp(end, times, host) - np.interp(start, times, host)) / TICK / seconds


@dataclass
class Row:
    count: int
    connected: int
    cores: float  # browser processes, while every call is up
    cpu_s: float  # browser processes, from the first launch to the last close
    rss: int
    pss: int
    launch: list[float]
    setup: list[float]
    pesq: dict[str, float | None]  # direction -> median
    agents: float
    host: float
    leftover: int


def scenario(count: int, duration: float, setup_timeout: float) -> dict[str, object]:
    call = {
        "name": "rep",
        "from": "client",
        "to": "gateway",
        "codec": "opus",
        "count": count,
        "duration": f"{duration}s",
        "setup_timeout": f"{setup_timeout}s",
        "endpoint": {"from": "chromium"},
    }
    return {"name": f"browser-calls-{count}", "calls": [call]}


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def measure(count: int, args: argparse.Namespace, directory: Path) -> Row:
    path = directory / f"browser-calls-{count}.yaml"
    path.write_text(yaml.safe_dump(scenario(count, args.duration, args.setup_timeout), sort_keys=False))
    experiment = testbed.load(path)
    with experiment.lab(purpose="bench browser_calls") as session:
        namespaces = {os.stat(session[node].netns_path).st_ino for node in session.nodes}
        with Sampler(namespaces, args.interval) as sampler:
            run = session.workload(directory / f"run-{count}").run()
    testbed.score(run)  # writes scores.json beside workload.json
    variant_dir = run.path / experiment.variants[0]
    workload = WorkloadRecord.load(variant_dir / WORKLOAD_FILE)
    scores = VariantScores.load(variant_dir / SCORES_FILE)

    browsers = [side for call in workload.calls for side in call.sides.values() if side.endpoint == "chromium"]
    connected = [call for call in workload.calls if call.connected_at is not None]
    stopped = [side.media_stopped_at for side in browsers if side.media_stopped_at is not None]
    all_up = max((call.connected_at for call in connected), default=None)
    if all_up is not None and stopped and min(stopped) > all_up + 1:
        window = (all_up, min(stopped))  # every call connected and sending
    else:  # some call never connected: the whole run
        window = (sampler.samples[0][0], sampler.samples[-1][0])
    cores, host = sampler.cores(*window)
    pesq: dict[str, list[float]] = {}
    for call in scores.calls:
        for label, direction in call.scored().items():
            if direction.mos_pesq is not None:
                pesq.setdefault(label, []).append(direction.mos_pesq)
    agent_s = sum(a.get("cpu_s", 0.0) for a in workload.agents.values())  # their own, not the browsers'
    return Row(
        count=count,
        connected=len(connected),
        cores=cores,
        cpu_s=sampler.samples[-1][1],
        rss=max(s[2] for s in sampler.samples),
        pss=max(s[3] for s in sampler.samples),
        launch=[s.launch_s for s in browsers if s.launch_s is not None],
        setup=[s.setup_s for s in browsers if s.setup_s is not None],
        pesq={label: median(values) for label, values in sorted(pesq.items())},
        agents=agent_s / workload.duration,
        host=host,
        leftover=len(browser_pids(namespaces)),  # the lab is down: anything here outlived it
    )


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f}/{max(values):5.2f}" if values else "    -/    -"


def show(row: Row) -> None:
    n = row.count
    pesq = "  ".join(f"{label} {'-' if v is None else f'{v:.2f}'}" for label, v in row.pesq.items()) or "-"
    print(
        f"{n:>5} {row.connected:>4} {row.cores:>6.2f} {row.cores / n:>6.2f} {row.cpu_s / n:>8.1f}"
        f" {row.rss / MB:>7.0f} {row.rss / MB / n:>6.0f} {row.pss / MB / n:>6.0f}"
        f"  {spread(row.launch)}  {spread(row.setup)} {row.agents:>6.2f} {row.host:>5.2f}  {pesq}",
        flush=True,
    )


def fault(row: Row) -> str:
    """Why a row's calls fall short ('' when every call connected with median PESQ >= PESQ_LIMIT both ways)."""
    if row.connected < row.count:
        return f"{row.count - row.connected} of {row.count} calls did not connect"
    low = [(d, row.pesq.get(d)) for d in DIRECTIONS if row.pesq.get(d) is None or row.pesq[d] < PESQ_LIMIT]
    return ", ".join(f"median PESQ {d} {'none' if v is None else f'{v:.2f}'}" for d, v in low)


def estimate(rows: list[Row], cores: int, memory: int) -> str:
    """Browser calls that fit: the browsers' CPU at CPU_LIMIT of the cores and their PSS at MEMORY_LIMIT
    of the memory, scaled from the largest N whose calls all connected; capped below the first N whose
    calls fell short."""
    connected = [r for r in rows if r.connected == r.count]
    if not connected:
        return "estimate: none - no N had all its calls connected"
    basis = connected[-1]
    by_cpu = CPU_LIMIT * cores / (basis.cores / basis.count)
    by_memory = MEMORY_LIMIT * memory / (basis.pss / basis.count)
    fit = math.floor(min(by_cpu, by_memory))
    scaled = (
        f"CPU at {CPU_LIMIT:.0%} of {cores} cores at ~{by_cpu:.1f} calls, memory at {MEMORY_LIMIT:.0%} of "
        f"{memory / 2**30:.1f} GiB at ~{by_memory:.0f} (browser processes only, scaled from N={basis.count})"
    )
    short = [r for r in rows if fault(r)]
    if not short:
        held = f"median PESQ >= {PESQ_LIMIT} both ways up to N={rows[-1].count}"
        return f"estimate: ~{fit} browser calls fit: {scaled}; {held}"
    below = [r.count for r in rows if r.count < short[0].count]
    fit = min(fit, max(below, default=0))
    return (
        f"estimate: ~{fit} browser calls fit: {scaled}; but at N={short[0].count}: {fault(short[0])} "
        f"(limit PESQ {PESQ_LIMIT})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,2,4")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds each call lasts")
    parser.add_argument("--setup-timeout", type=float, default=30.0, help="seconds (browser launch included)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between /proc samples")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with open("/proc/meminfo") as meminfo:
        memory = int(meminfo.readline().split()[1]) * 1024  # MemTotal
    print(
        f"machine: {cores} cores, {memory / 2**30:.1f} GiB; "
        f"calls: Chromium -> aiortc, opus, idle link, {args.duration:g} s"
    )
    print(
        f"{'calls':>5} {'up':>4} {'cores':>6} {'/call':>6} {'cpu-s/c':>8} {'RSS MB':>7} {'/call':>6} {'PSS/c':>6}"
        f"  {'launch s':>11}  {'setup s':>11} {'agents':>6} {'host':>5}  median PESQ"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="browser-calls-") as directory:
        for count in (int(c) for c in args.counts.split(",")):
            rows.append(measure(count, args, Path(directory)))
            show(rows[-1])
    removed = "removed" if not Path(directory).exists() else f"NOT removed ({directory})"
    print("  (cores: browser processes while every call is up; cpu-s/c: per call from launch to close;")
    print("   launch, setup: median/max over the browser legs; agents: both nodes' agents' own cores over the run")
    print("   (aiortc on the gateway, the Playwright client on the client);")
    print("   host: the whole machine's busy cores while the calls are up, other work included)")
    print(estimate(rows, cores, memory))
    left = sum(r.leftover for r in rows)
    others = len(browser_pids())  # our labs are gone, so any left now belongs to other work
    print(
        f"left behind: {'none' if left == 0 else f'{left} browser processes'} in the bench's labs; "
        f"temp dir {removed}; {others} Chromium/Playwright processes elsewhere on the host (not this bench's)"
    )


if __name__ == "__main__":
    main()
