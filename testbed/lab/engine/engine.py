"""The userspace impairment engine: one process per impaired link end, inside the node that owns it.

An iptables rule (``mangle POSTROUTING -o IF ... -j NFQUEUE --queue-bypass``) hands each packet leaving
the interface to this process. For every packet the netem model (``models.py``) decides: drop it now,
or accept it at a release time (perhaps with a corrupted payload, perhaps with a copy sent later).
Held packets wait in the kernel; a heap of release times says which verdict is due next. Copies go out
through a raw socket whose mark the iptables rule skips, so they are not impaired twice.

The process prints one JSON line ``{"event": "ready"}`` once bound, then a ``stats`` line every
second and at exit (counters, scheduling error percentiles, the kernel queue's own drop counters).
It exits cleanly on SIGTERM or SIGINT, releasing what it still holds.

``python -m testbed.lab.engine CONFIG_JSON``
"""

from __future__ import annotations

import gc
import heapq
import json
import os
import select
import signal
import socket
import sys
import time
from array import array
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from testbed.lab.engine.models import ImpairmentModel, corrupt_payload, load_trace
from testbed.lab.engine.nfqueue import NfQueue, queue_counters
from testbed.scenario.model import Impairment

COPY_MARK = 0x7E57  # packets the engine sends itself (duplicates) carry this mark; the rule skips them
SO_MARK = 36
SPIN_NS = 200_000  # the last 0.2 ms before a release is spent spinning: select() wakes up late
STATS_EVERY_NS = 1_000_000_000
ACCEPT, CORRUPT, COPY = 0, 1, 2


@dataclass
class EngineConfig:
    """What the harness passes to the process (as JSON on the command line)."""

    queue_num: int
    impairment: dict[str, Any]
    max_len: int
    per_flow_order: bool = True
    trace: str | None = None
    seed: int | None = None
    label: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class EngineStats:
    received: int = 0
    dropped: int = 0
    corrupted: int = 0
    duplicated: int = 0
    released: int = 0
    held: int = 0
    late_p50_ms: float = 0.0
    late_p99_ms: float = 0.0
    late_max_ms: float = 0.0
    kernel: dict[str, int] = field(default_factory=dict)


class Engine:
    def __init__(self, config: EngineConfig):
        self.config = config
        impairment = Impairment.model_validate(config.impairment)
        trace = load_trace(config.trace) if config.trace else None
        self.start_ns = time.monotonic_ns()
        self.model = ImpairmentModel(
            impairment,
            np.random.default_rng(config.seed),
            per_flow_order=config.per_flow_order,
            trace=trace,
            start_ns=self.start_ns,
        )
        self.rng = np.random.default_rng(None if config.seed is None else config.seed + 1)
        self.queue = NfQueue(config.queue_num, max_len=config.max_len)
        self.copies = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.copies.setsockopt(socket.SOL_SOCKET, SO_MARK, COPY_MARK)
        self.held: list[tuple[int, int, int, int, bytes | None]] = []  # (release, order, kind, id, payload)
        self.order = 0
        self.stats = EngineStats()
        self.lateness = array("q")  # ns between due time and the verdict, every released packet
        self.stopping = False

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        _realtime()
        gc.collect()
        gc.freeze()  # nothing allocated so far is ever collected: no long pauses mid-run
        report("ready")
        next_stats = time.monotonic_ns() + STATS_EVERY_NS
        fd = self.queue.fileno()
        while not self.stopping:
            now = self._release_due()
            if now >= next_stats:
                self._report()
                next_stats = now + STATS_EVERY_NS
            wait = 0.5 if not self.held else max(0.0, (self.held[0][0] - now - SPIN_NS) / 1e9)
            try:
                readable, _, _ = select.select([fd], [], [], min(wait, (next_stats - now) / 1e9))
            except InterruptedError:
                continue
            if readable:
                self._take(self.queue.receive(timeout=0, max_packets=1024))
        self._release_all()
        self._report()

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _take(self, packets: list) -> None:
        model, held, stats = self.model, self.held, self.stats
        for packet in packets:
            stats.received += 1
            decision = model.decide(packet.received_ns, packet.payload)
            if decision.drop:
                self.queue.verdict(packet.packet_id, False)
                stats.dropped += 1
                continue
            self.order += 1
            if decision.corrupt:
                stats.corrupted += 1
                heapq.heappush(
                    held,
                    (
                        decision.release_ns,
                        self.order,
                        CORRUPT,
                        packet.packet_id,
                        corrupt_payload(packet.payload, self.rng),
                    ),
                )
            else:
                heapq.heappush(held, (decision.release_ns, self.order, ACCEPT, packet.packet_id, None))
            if decision.copy is not None:
                stats.duplicated += 1
                self.order += 1
                copy = decision.copy
                payload = corrupt_payload(packet.payload, self.rng) if copy.corrupt else packet.payload
                heapq.heappush(held, (copy.release_ns, self.order, COPY, 0, payload))
        self.queue.flush()

    def _release_due(self) -> int:
        """Issue every verdict that is due (spinning for the last moments); return the time."""
        held = self.held
        now = time.monotonic_ns()
        released = False
        while held and held[0][0] <= now + SPIN_NS:
            release, _, kind, packet_id, payload = heapq.heappop(held)
            while now < release:
                now = time.monotonic_ns()
            self._issue(kind, packet_id, payload)
            self.lateness.append(time.monotonic_ns() - release)
            released = True
            now = time.monotonic_ns()
        if released:
            self.queue.flush()
        return now

    def _issue(self, kind: int, packet_id: int, payload: bytes | None) -> None:
        if kind == COPY:
            try:
                self.copies.sendto(payload, (socket.inet_ntoa(payload[16:20]), 0))
            except OSError:
                pass  # a copy that cannot be sent is a lost copy
            return
        self.queue.verdict(packet_id, True, payload=payload)
        self.stats.released += 1

    def _release_all(self) -> None:
        while self.held:
            _, _, kind, packet_id, payload = heapq.heappop(self.held)
            self._issue(kind, packet_id, payload)
        self.queue.flush()

    def _report(self) -> None:
        stats = self.stats
        stats.held = len(self.held)
        if len(self.lateness):
            late = np.frombuffer(self.lateness, dtype=np.int64) / 1e6
            stats.late_p50_ms, stats.late_p99_ms = (round(float(v), 4) for v in np.percentile(late, [50, 99]))
            stats.late_max_ms = round(float(late.max()), 4)
        stats.kernel = queue_counters(self.config.queue_num) or {}
        report("stats", **asdict(stats))


def _realtime() -> None:
    """Run at real-time priority when allowed: scheduling error then stays well under a millisecond."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (OSError, AttributeError):
        pass


def report(event: str, **values: Any) -> None:
    """One JSON line for the harness; a harness that went away (kept labs) is no reason to stop."""
    try:
        print(json.dumps({"event": event, **values}), flush=True)
    except (BrokenPipeError, OSError):
        pass


def main(argv: list[str]) -> int:
    config = EngineConfig(**json.loads(argv[0]))
    try:
        engine = Engine(config)
    except Exception as exc:  # the harness shows this line: say what failed
        report("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    engine.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
