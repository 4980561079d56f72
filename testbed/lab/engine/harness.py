"""Starting, watching and stopping engine processes from the lab (the harness side of ``engine.py``).

Where the engine acts: the iptables rule sits in ``mangle POSTROUTING`` of the sending node, so a
packet is delayed, dropped, duplicated or corrupted *before* it reaches the interface's qdisc (the HTB
shaper and its queue). Kernel netem sits *under* the HTB class instead, after the shaper. The
difference shows only when a link is both rate-limited and congested: with netem, queueing delay
builds up before the fixed delay; with the engine, after it. Loss rates and delay distributions of an
uncongested link are the same.

Fail safe: the rule uses ``--queue-bypass``, so packets pass rather than vanish if no engine is bound,
and the rule is only added once the engine is ready. The kernel queue is sized for the link rate times
the longest delay; its overflow counters are part of the stats. An engine that dies is a failed run
(see ``Lab``): its link would carry unimpaired traffic, which must never pass for a good result.
"""

from __future__ import annotations

import subprocess
import threading
from typing import Any

from testbed.errors import LabError
from testbed.lab.backends import Node
from testbed.lab.engine.engine import COPY_MARK, EngineConfig
from testbed.lab.iptables import IPTABLES
from testbed.lab.priority import promote
from testbed.proc import ENGINE, follow, stop_process
from testbed.scenario.model import Impairment
from testbed.scenario.trace import load_trace

READY_TIMEOUT = 15.0
MIN_PACKET_BYTES = 100  # queue sizing assumes small packets: voice is 100-250 bytes
DEFAULT_LINK_RATE = 1_000_000_000  # an unshaped veth: size for a gigabit
QUEUE_HEADROOM = 0.2  # seconds of traffic on top of the longest delay


def longest_delay(impairment: Impairment) -> float:
    """Seconds a packet can be held: the delay plus the jitter's far tail (or the trace's worst row)."""
    delay, jitter = impairment.delay, impairment.jitter
    if impairment.trace:
        rows = load_trace(impairment.trace).rows
        delay = max([delay, *(row.delay_ms / 1e3 for row in rows)])
        jitter = max([jitter, *(row.jitter_ms / 1e3 for row in rows if row.jitter_ms is not None)])
    tail = 10 if impairment.jitter_distribution in ("pareto", "paretonormal") else 4
    return delay + tail * jitter


def kernel_queue_length(impairment: Impairment) -> int:
    """Packets the kernel must be able to hold for the engine: rate x longest delay, in small packets."""
    rate = impairment.rate or DEFAULT_LINK_RATE
    packets = rate / 8 / MIN_PACKET_BYTES * (longest_delay(impairment) + QUEUE_HEADROOM)
    return int(min(max(packets, 1024), 1_000_000))


def iptables_rule(ifname: str, queue_num: int) -> list[str]:
    """The rule's body (after ``-A``/``-D POSTROUTING``): every packet leaving ``ifname`` but the engine's copies."""
    return [
        "-o",
        ifname,
        "-m",
        "mark",
        "!",
        "--mark",
        hex(COPY_MARK),
        "-j",
        "NFQUEUE",
        "--queue-num",
        str(queue_num),
        "--queue-bypass",
    ]


class EngineProcess:
    """The engine for one link end: ``start()``, ``check()`` while the lab runs, ``stop()`` for its stats."""

    def __init__(self, node: Node, ifname: str, impairment: Impairment, queue_num: int, seed: int | None = None):
        self.node = node
        self.ifname = ifname
        self.impairment = impairment
        self.queue_num = queue_num
        self.label = f"{ifname}@{node.name}"
        self.config = EngineConfig(
            queue_num=queue_num,
            impairment=impairment.model_dump(),  # validated here: the engine reads it as is
            max_len=kernel_queue_length(impairment),
            per_flow_order=impairment.flow_order == "kept",
            trace=impairment.trace,
            seed=seed,
            label=self.label,
        )
        self.process: subprocess.Popen[str] | None = None
        self.stats: dict[str, Any] = {}
        self.error: str | None = None
        self.stopping = False
        self._ready = threading.Event()
        self._said_ready = False
        self._reader: threading.Thread | None = None
        self._rule_added = False

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process; ``wait_ready`` finishes the start (several engines start at once this way:
        their interpreters' start-up overlaps)."""
        self.process = self.node.popen(
            [self.node.python, "-m", ENGINE.marker, self.config.to_json()],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )  # a terminal's Ctrl-C is the lab's to handle
        assert self.process.stdout is not None
        self._reader = follow(
            self.process.stdout,
            self._handle,
            name=f"engine {self.label}",
            on_text=self._text,
            on_end=self._ready.set,  # wake start() if the process ended before it was ready
        )

    def wait_ready(self) -> None:
        """Wait for the engine's ready line, then raise its priority and queue the link end's packets to it."""
        assert self.process is not None
        if not self._ready.wait(READY_TIMEOUT) or not self._said_ready:
            stop_process(self.process, 0, terminate=False)
            raise LabError(
                f"the userspace impairment engine for {self.label} did not start: "
                f"{self.error or f'no ready signal within {READY_TIMEOUT:g}s'}"
            )
        promote(self.node.netns_path, ENGINE)  # containers cannot raise their own priority
        self._iptables("-A")
        self._rule_added = True

    def _handle(self, message: dict[str, Any]) -> None:
        event = message.pop("event", "")
        if event == "ready":
            self._said_ready = True
            self._ready.set()
        elif event == "stats":
            self.stats = message
        elif event == "error":
            self.error = message.get("message")

    def _text(self, line: str) -> None:
        self.error = line  # a traceback's last line says most

    def _iptables(self, action: str) -> None:
        command = [IPTABLES, "-t", "mangle", action, "POSTROUTING", *iptables_rule(self.ifname, self.queue_num)]
        result = self.node.run(command, timeout=30)
        if result.returncode != 0:
            raise LabError(f"`{' '.join(command)}` in {self.node.name} failed: {result.stdout}{result.stderr}".strip())

    def check(self) -> str | None:
        """None while the engine runs; otherwise why its link is no longer impaired."""
        if self.process is None or self.stopping:
            return None
        code = self.process.poll()
        if code is None:
            return None
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        detail = f" ({self.error})" if self.error else ""
        return (
            f"the userspace impairment engine for {self.label} {how}{detail}; packets on that link are no "
            "longer delayed or dropped, so the run's results would look better than the link is"
        )

    def stop(self, timeout: float = 5.0) -> dict[str, Any]:
        """Remove the rule, let the engine release what it holds, and return its final stats."""
        self.stopping = True
        if self.process is None:
            return self.stats
        if self._rule_added and self.process.poll() is None:
            try:
                self._iptables("-D")
            except (LabError, OSError, subprocess.SubprocessError):
                pass  # the namespace goes away with the lab anyway
        stop_process(self.process, timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        return self.stats

    def lateness(self) -> dict[str, Any]:
        """How late the engine released packets against their schedule (its last stats line): the
        harness's own error, which a loaded host shows here rather than as a wrong link delay."""
        return {key: value for key, value in self.stats.items() if key.startswith("late_")}

    def describe(self) -> dict[str, Any]:
        return {
            "node": self.node.name,
            "interface": self.ifname,
            "queue": self.queue_num,
            "queue_length": self.config.max_len,
            "flow_order": self.impairment.flow_order,
            "trace": self.impairment.trace,
            "pid": self.process.pid if self.process else None,
            "release_lateness": self.lateness(),
        }
