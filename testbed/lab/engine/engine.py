"""The userspace impairment engine: one process per impaired link end, inside the node that owns it.

An iptables rule (``mangle POSTROUTING -o IF ... -j NFQUEUE --queue-bypass``) hands each packet leaving
the interface to this process. For every packet the netem model (``models.py``) decides: drop it now,
or accept it at a release time (perhaps with a corrupted payload, perhaps with a copy sent later).
Held packets wait in the kernel; a heap of release times says which verdict is due next. Copies go out
through a raw socket whose mark the iptables rule skips, so they are not impaired twice.

The process prints one JSON line ``{"event": "ready"}`` once bound, then a ``stats`` line every
second and at exit (counters, the kernel queue's own drop counters, and its release lateness: how
long after its scheduled time each packet actually left, ``late_p50_ms``/``late_p99_ms``/
``late_max_ms`` and ``late_over_1ms``). Lateness is the harness's own error: on a loaded host it shows
up there rather than as a link whose delay looks wrong. It exits cleanly on SIGTERM or SIGINT,
releasing what it still holds.

``python -m testbed.lab.engine CONFIG_JSON``
"""

from __future__ import annotations

import gc
import heapq
import json
import select
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from testbed.errors import ExitCode
from testbed.lab.engine.models import ImpairmentModel, corrupt_payload
from testbed.lab.engine.nfqueue import NfQueue, QueuedPacket, queue_counters
from testbed.proc import ENGINE, StopSignals, emit, set_realtime
from testbed.scenario.trace import load_trace
from testbed.sockopts import SO_MARK

if TYPE_CHECKING:
    from testbed.scenario.model import Impairment

COPY_MARK = 0x7E57  # packets the engine sends itself (duplicates) carry this mark; the rule skips them
SPIN_NS = 200_000  # the last 0.2 ms before a release is spent spinning: select() wakes up late
STATS_EVERY_NS = 1_000_000_000
LATE_NS = 1_000_000  # a release this late counts in ``late_over_1ms``
LATENESS_BIN_NS = 10_000  # lateness histogram: 10 us bins up to 1 s (the last bin holds the rest)
LATENESS_BINS = 100_000
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
    late_over_1ms: int = 0
    kernel: dict[str, int] = field(default_factory=dict)


class Lateness:
    """How late each release was, as a histogram: constant memory and a constant cost per stats line
    however long the run (percentiles over every sample would cost the engine more time each second,
    at real-time priority, while packets wait). Percentiles are bin upper edges (10 us resolution)."""

    def __init__(self) -> None:
        self.bins = np.zeros(LATENESS_BINS, dtype=np.int64)
        self.count = 0
        self.over = 0  # later than LATE_NS
        self.max_ns = 0

    def add(self, late_ns: int) -> None:
        late_ns = max(0, late_ns)
        self.bins[min(late_ns // LATENESS_BIN_NS, LATENESS_BINS - 1)] += 1
        self.count += 1
        if late_ns > LATE_NS:
            self.over += 1
        if late_ns > self.max_ns:
            self.max_ns = late_ns

    def percentile_ms(self, q: float) -> float:
        if not self.count:
            return 0.0
        index = int(np.searchsorted(np.cumsum(self.bins), q / 100 * self.count))
        upper = self.max_ns if index == LATENESS_BINS - 1 else min((index + 1) * LATENESS_BIN_NS, self.max_ns)
        return round(upper / 1e6, 4)

    def into(self, stats: EngineStats) -> None:
        stats.late_p50_ms, stats.late_p99_ms = self.percentile_ms(50), self.percentile_ms(99)
        stats.late_max_ms = round(self.max_ns / 1e6, 4)
        stats.late_over_1ms = self.over


def impairment_fields(fields: dict[str, Any]) -> Impairment:
    """The impairment the harness validated (its ``model_dump()``: plain numbers, seconds and percents)
    read as attributes. Validating it again here would import pydantic and the scenario model: over half
    of an engine's start-up, paid by every engine of every lab while the lab comes up."""
    loss = fields.get("loss")
    return cast("Impairment", SimpleNamespace(**{**fields, "loss": SimpleNamespace(**loss) if loss else None}))


class Engine:
    def __init__(self, config: EngineConfig):
        self.config = config
        impairment = impairment_fields(config.impairment)
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
        self.lateness = Lateness()  # between due time and the verdict, every released packet
        self.signals: StopSignals | None = None

    # ------------------------------------------------------------ the loop

    @property
    def stopping(self) -> bool:
        return self.signals is not None and self.signals.requested

    def run(self) -> None:
        self.signals = signals = StopSignals()  # a stop signal wakes the select() below at once
        set_realtime(ENGINE)  # scheduling error then stays well under a millisecond
        gc.collect()
        gc.freeze()  # nothing allocated so far is ever collected: no long pauses mid-run
        emit("ready")
        next_stats = time.monotonic_ns() + STATS_EVERY_NS
        fd = self.queue.fileno()
        while not signals.requested:
            now = self._release_due()
            if now >= next_stats:
                self._report()
                next_stats = now + STATS_EVERY_NS
            wait = 0.5 if not self.held else max(0.0, (self.held[0][0] - now - SPIN_NS) / 1e9)
            readable, _, _ = select.select([fd, signals.fileno()], [], [], min(wait, (next_stats - now) / 1e9))
            if fd in readable:
                self._take(self.queue.receive(timeout=0, max_packets=1024))
        self._release_all()
        self._report()

    def _take(self, packets: list[QueuedPacket]) -> None:
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
            self.lateness.add(time.monotonic_ns() - release)
            released = True
            now = time.monotonic_ns()
        if released:
            self.queue.flush()
        return now

    def _issue(self, kind: int, packet_id: int, payload: bytes | None) -> None:
        if kind == COPY:
            try:
                assert payload is not None  # a copy always carries its bytes
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
        self.lateness.into(stats)
        stats.kernel = queue_counters(self.config.queue_num) or {}
        emit("stats", **asdict(stats))  # a harness that went away (kept labs) is no reason to stop


def main(argv: list[str]) -> int:
    config = EngineConfig(**json.loads(argv[0]))
    try:
        engine = Engine(config)
    except Exception as exc:  # the harness shows this line: say what failed
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return getattr(exc, "exit_code", ExitCode.FAILED)
    engine.run()
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
