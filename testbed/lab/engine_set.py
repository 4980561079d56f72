"""The userspace impairment engines of one lab: which link ends need one, (re)starting them, and a
watchdog that fails the run when one dies, because its link would then carry unimpaired traffic.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from types import FrameType
from typing import Any

from testbed.errors import InputError, LabError
from testbed.lab import impair
from testbed.lab.backends.base import Node
from testbed.lab.engine.harness import EngineProcess
from testbed.lab.signals import handled
from testbed.scenario.model import Impairment

ENGINE_CHOICES = ("auto", "netem", "userspace")
ENGINE_FAILED_SIGNAL = signal.SIGUSR1  # the watchdog's way to interrupt whatever the main thread waits on
WATCH_INTERVAL = 0.2


class EngineFailed(LabError):
    """An impairment engine died while the lab ran: its link is no longer impaired."""


class EngineSet:
    """The engines per (node, link) end; ``nodes`` is the lab's node map (read when netem is probed)."""

    def __init__(self, choice: str, nodes: Mapping[str, Node]):
        if choice not in ENGINE_CHOICES:
            raise InputError(f"impairment engine {choice!r}: use auto, netem or userspace")
        self.choice = choice
        self.nodes = nodes
        self.kernel_netem: bool | None = None  # probed on first need
        self.running: dict[tuple[str, str], EngineProcess] = {}
        self._launching: list[EngineProcess] | None = None  # inside starting_together
        self.stats: dict[str, dict[str, Any]] = {}  # label -> final stats of engines that were stopped
        self.failure: str | None = None
        self._polled = False  # inside ``polled``: the watchdog's signal does not raise
        self._queue_numbers: dict[str, int] = {}
        self._watchdog: threading.Thread | None = None
        self._watchdog_stop = threading.Event()
        self._main_thread = threading.main_thread().ident

    def uses_engine(self, impairment: Impairment) -> bool:
        """Whether the userspace engine (rather than kernel netem) does this direction's netem part."""
        if not impairment.needs_netem():
            return False
        if impairment.trace:
            if self.choice == "netem":
                raise InputError(
                    "a link 'trace' is replayed by the userspace engine only; use impairment_engine auto or userspace"
                )
            return True
        if self.choice == "auto":
            if self.kernel_netem is None:
                first = next(iter(self.nodes.values()))
                self.kernel_netem = impair.netem_works(first.netns_path)
            return not self.kernel_netem
        return self.choice == "userspace"

    def assign(self, node_name: str, link: str, impairment: Impairment) -> Impairment:
        """(Re)start or stop the engine of one link end; return what the kernel's qdiscs must still do."""
        old = self.running.pop((node_name, link), None)
        if old is not None:
            self.stats[old.label] = old.stop()
        if not self.uses_engine(impairment):
            return impairment
        queue_num = self._queue_numbers.get(node_name, 0)
        self._queue_numbers[node_name] = queue_num + 1
        engine = EngineProcess(self.nodes[node_name], link, impairment, queue_num)
        self.running[(node_name, link)] = engine  # listed first: stop_all stops it if its start fails
        if self._launching is not None:
            engine.launch()
            self._launching.append(engine)
        else:
            engine.start()
        return impairment.shaping_only()

    @contextmanager
    def starting_together(self) -> Iterator[None]:
        """Engines assigned inside start at once and are waited for at the end (a lab's first
        impairments: each engine's interpreter start-up overlaps the others' and the lab's own work)."""
        self._launching = []
        try:
            yield
            for engine in self._launching:
                engine.wait_ready()
        finally:
            self._launching = None

    def counters(self) -> dict[str, dict[str, Any]]:
        """Every engine's counters by label: the final ones of stopped engines, the latest of running ones."""
        return self.stats | {engine.label: engine.stats for engine in self.running.values()}

    def check(self) -> str | None:
        """None while every engine runs; otherwise why one link is no longer impaired."""
        if self.failure:
            return self.failure
        for engine in list(self.running.values()):
            failure = engine.check()
            if failure:
                return failure
        return None

    def raise_if_failed(self) -> None:
        failure = self.check()
        if failure:
            self.failure = failure
            raise EngineFailed(failure)

    def failures_raise(self) -> AbstractContextManager[None]:
        """While inside, the watchdog can raise EngineFailed in the main thread."""

        def raise_failure(signum: int, frame: FrameType | None) -> None:
            if self.failure and not self._polled:
                raise EngineFailed(self.failure)

        return handled({ENGINE_FAILED_SIGNAL: raise_failure})

    @contextmanager
    def polled(self) -> Iterator[None]:
        """While inside, a failure is not raised wherever the main thread happens to be: the caller polls
        ``raise_if_failed`` (a workload, which then winds down and keeps what it recorded)."""
        self._polled = True
        try:
            yield
        finally:
            self._polled = False

    def start_watchdog(self) -> None:
        if self.running and self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="engine watchdog", daemon=True)
            self._watchdog.start()

    def _watch(self) -> None:
        while not self._watchdog_stop.wait(WATCH_INTERVAL):
            failure = self.check()
            if failure:
                self.failure = failure
                if self._main_thread is not None:
                    signal.pthread_kill(self._main_thread, ENGINE_FAILED_SIGNAL)
                return

    def stop_all(self) -> None:
        """Stop the watchdog and every engine, keeping their final stats (teardown: never raises)."""
        self._watchdog_stop.set()
        for engine in self.running.values():
            try:
                self.stats[engine.label] = engine.stop()
            except Exception:
                pass  # it dies with its namespace
        self.running.clear()

    def describe(self) -> dict[str, Any]:
        return {
            "choice": self.choice,
            "kernel_netem": self.kernel_netem,
            "userspace": [engine.describe() for engine in self.running.values()],
        }
