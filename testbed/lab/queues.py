"""Queue observability: per-second samples of every qdisc and class on the watched interfaces
(bytes and packets sent, drops, overlimits, backlog), read through rtnetlink."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pyroute2 import IPRoute

from testbed.lab import netns
from testbed.results.workload import QueueSample


def format_handle(handle: int) -> str:
    """0x10010 -> ``1:10`` as tc prints it."""
    return f"{handle >> 16:x}:{handle & 0xFFFF:x}" if handle & 0xFFFF else f"{handle >> 16:x}:"


def read_queues(ipr: IPRoute, node: str, interface: str, at: float) -> list[QueueSample]:
    """One sample of every qdisc and class on ``interface`` (cumulative kernel counters)."""
    index = ipr.link_lookup(ifname=interface)[0]
    samples = []
    for what, messages in (("qdisc", ipr.get_qdiscs(index=index)), ("class", ipr.get_classes(index=index))):
        for message in messages:
            stats = message.get_attr("TCA_STATS2")
            basic = stats.get_attr("TCA_STATS_BASIC") if stats else None
            queue = stats.get_attr("TCA_STATS_QUEUE") if stats else None
            if basic is None or queue is None:
                continue
            samples.append(
                QueueSample(
                    time=round(at, 3),
                    node=node,
                    interface=interface,
                    object=what,
                    kind=message.get_attr("TCA_KIND"),
                    handle=format_handle(message["handle"]),
                    bytes=basic["bytes"],
                    packets=basic["packets"],
                    drops=queue["drops"],
                    overlimits=queue["overlimits"],
                    backlog_bytes=queue["backlog"],
                    backlog_packets=queue["qlen"],
                )
            )
    return samples


class QueueSampler:
    """Samples the watched interfaces every ``interval`` seconds on a background thread.

    Use as a context manager; ``samples`` holds everything collected, from a first sample at start to a
    last one at stop. pyroute2 sockets are per thread, so the sampling thread opens its own.
    """

    def __init__(self, watched: list[tuple[str, Path, str]], interval: float = 1.0):
        self.watched = watched  # (node name, namespace path, interface)
        self.interval = interval
        self.samples: list[QueueSample] = []
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-sampler", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> QueueSampler:
        self._thread.start()
        self._first.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        sockets: dict[Path, IPRoute] = {}
        try:
            for _, path, _ in self.watched:
                if path not in sockets:
                    sockets[path] = IPRoute(fileno=netns.netlink_socket(path).detach())
            started = time.monotonic()

            def sample() -> None:
                at = time.monotonic() - started
                for node, path, interface in self.watched:
                    self.samples.extend(read_queues(sockets[path], node, interface, at))

            sample()
            self._first.set()
            next_due = started + self.interval
            while not self._stop.wait(max(0.0, next_due - time.monotonic())):
                sample()
                next_due += self.interval
            sample()
        except BaseException as exc:  # handed to the owner's thread
            self._error = exc
        finally:
            self._first.set()
            for ipr in sockets.values():
                ipr.close()
