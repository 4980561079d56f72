"""Plumbing shared by the testbed's child processes and the code that starts them.

Every process the harness starts inside a node (agent, traffic source and sink, packet tap, impairment
engine) speaks the same protocol on stdout: one JSON object per line with an ``event`` key (``ready``
first, then reports, ``done`` or ``error`` last). This module is that protocol's one home, for both
sides, together with what every such process needs around it: ending it (SIGTERM, a grace period,
SIGKILL), noticing a stop signal at once while it waits, and a real-time scheduling class for the ones
whose timing is the measurement.

Imports only the standard library: node processes start in tens of milliseconds.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:  # asyncio is the agent's; taps and traffic processes start without it
    import asyncio

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot): tells a process from a later one that
    reuses its pid. None when no such process runs."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields.rsplit(")", 1)[1].split()[19])


STOP_TIMEOUT = 10.0  # seconds a child gets after SIGTERM before SIGKILL

# ================================================================ events: writing


def write_message(message: Mapping[str, Any], stream: TextIO | None = None) -> bool:
    """Write one JSON line and flush it. A reader that went away (the harness of a kept lab exited) is
    no reason for the process to stop: returns False instead of raising."""
    try:
        out = sys.stdout if stream is None else stream
        out.write(json.dumps(message, separators=(",", ":")) + "\n")
        out.flush()
        return True
    except (BrokenPipeError, OSError, ValueError):  # ValueError: the stream was closed
        return False


def emit(event: str, /, **fields: Any) -> bool:
    """``{"event": event, **fields}`` as one line on stdout."""
    return write_message({"event": event, **fields})


# ================================================================ events: reading


def decode(line: str | bytes) -> dict[str, Any] | None:
    """One line -> its JSON object; None for a blank line, other text or JSON that is not an object."""
    text = line.decode(errors="replace") if isinstance(line, bytes) else line
    text = text.strip()
    if not text:
        return None
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None


def parse_line(line: str | bytes) -> dict[str, Any] | None:
    """One line of a child's output -> its event. Other text (a traceback on stderr) becomes
    ``{"event": "output", "text": ...}`` so it can end up in an error message; blank lines are None."""
    text = (line.decode(errors="replace") if isinstance(line, bytes) else line).strip()
    if not text:
        return None
    message = decode(text)
    if message is not None and "event" in message:
        return message
    return {"event": "output", "text": text}


def parse_events(lines: Iterable[str | bytes | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Lines (or events already decoded, as the agent relays them) -> events, in order."""
    events = []
    for line in lines:
        if isinstance(line, Mapping):
            events.append(dict(line))
            continue
        event = parse_line(line)
        if event is not None:
            events.append(event)
    return events


def follow(
    stream: IO[str],
    handle: Callable[[dict[str, Any]], None],
    *,
    name: str,
    on_text: Callable[[str], None] | None = None,
    on_end: Callable[[], None] | None = None,
) -> threading.Thread:
    """Read ``stream`` on a daemon thread until it ends: every JSON object goes to ``handle``, any other
    non-blank line to ``on_text``, then ``on_end`` runs. A thread that always reads keeps the child from
    ever blocking on a full pipe, however long it runs."""

    def read() -> None:
        try:
            for line in stream:
                message = decode(line)
                if message is not None:
                    handle(message)
                elif on_text is not None and line.strip():
                    on_text(line.strip())
        finally:
            if on_end is not None:
                on_end()

    thread = threading.Thread(target=read, name=name, daemon=True)
    thread.start()
    return thread


async def next_event(reader: asyncio.StreamReader, timeout: float | None = None) -> dict[str, Any] | None:
    """The next event from a child's stdout (asyncio), skipping blank lines; None at its end or after
    ``timeout`` seconds without a line."""
    import asyncio

    while True:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout)
        except TimeoutError:
            return None
        if not line:
            return None
        event = parse_line(line)
        if event is not None:
            return event


# ================================================================ ending a child


def stop_process(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT, *, terminate: bool = True) -> int:
    """End ``process``: SIGTERM (unless ``terminate`` is False: it was asked some other way, e.g. its
    stdin closed), up to ``timeout`` seconds to finish, then SIGKILL. Returns its exit status."""
    if process.poll() is None:
        if terminate:
            try:
                process.terminate()
            except ProcessLookupError:
                pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode is not None
    return process.returncode


class AsyncChild(Protocol):
    """What an asyncio program needs of its child: ``asyncio.subprocess.Process``, or a child the fork
    server forked for it (``testbed.media.forked.ForkedChild``)."""

    @property
    def returncode(self) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    async def wait(self) -> int: ...


async def stop_child(process: AsyncChild, timeout: float = STOP_TIMEOUT) -> int | None:
    """``stop_process`` for a child of an asyncio program."""
    import asyncio

    if process.returncode is None:
        try:
            process.terminate()
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
    return process.returncode


# ================================================================ stop signals


class StopSignals:
    """SIGTERM and SIGINT set ``requested`` and wake any wait at once.

    A socket pair is the signal wakeup fd: a process waiting in select() or a selector with
    ``reader`` (or ``fileno()``) among its descriptors returns as soon as a stop signal arrives, instead
    of Python resuming the interrupted wait until its timeout. ``handler`` runs in the signal handler
    too (e.g. to tell a loop to finish). Create it in the main thread.
    """

    def __init__(self, handler: Callable[[], None] | None = None) -> None:
        self.requested = False
        self._handler = handler
        self.reader, self._writer = socket.socketpair()
        for end in (self.reader, self._writer):
            end.setblocking(False)
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True
        if self._handler is not None:
            self._handler()

    def fileno(self) -> int:
        return self.reader.fileno()

    def drain(self) -> None:
        """Empty the wakeup socket (after a select() reported it readable)."""
        try:
            while self.reader.recv(256):
                pass
        except BlockingIOError:
            pass

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (microsecond resolution, unlike epoll) or until a stop signal."""
        if seconds > 0 and not self.requested:
            select.select([self.reader], [], [], seconds)


# ================================================================ the fork server's requests

FORK_FD_ENV = "TESTBED_FORK_FD"  # an agent's descriptor of its own line to the fork server


def spawn_request(request_id: int, argv: Sequence[str]) -> dict[str, Any]:
    """A spawn request for the fork server (``testbed.lab.zygote``): ``python -m PROGRAM ARGS`` with this
    process's environment and working directory, as ``subprocess`` would pass them to a fresh one.
    The harness and the agents both send it; the descriptors go beside it (SCM_RIGHTS)."""
    return {"id": request_id, "entry": argv[2], "argv": list(argv[3:]), "env": dict(os.environ), "cwd": os.getcwd()}


# ================================================================ real-time priority


@dataclass(frozen=True)
class RealTime:
    """A real-time scheduling class for a kind of process; ``marker`` is the module name in its command
    line and ``comm`` its process name when the fork server started it (``testbed.lab.forkserver``), by
    which the harness finds it from the host (``testbed.lab.priority``)."""

    marker: str
    policy: int
    priority: int
    comm: str


# The engines decide the network's timing, so they run above the agents, which pace media in 20 ms steps
# and sleep between packets (neither can starve the machine). Children start at normal priority
# (SCHED_RESET_ON_FORK): a spinning traffic source must never be real-time.
AGENT = RealTime("testbed.media.agent", os.SCHED_RR, 5, "vtb-agent")
ENGINE = RealTime("testbed.lab.engine", os.SCHED_FIFO, 10, "vtb-engine")


def set_realtime(rt: RealTime, pid: int = 0) -> bool:
    """Put thread/process ``pid`` (0: the caller) in ``rt``'s class; False where the kernel refuses
    (no CAP_SYS_NICE, e.g. in a container): normal priority still works, less precisely."""
    try:
        os.sched_setscheduler(pid, rt.policy | os.SCHED_RESET_ON_FORK, os.sched_param(rt.priority))
        return True
    except (OSError, AttributeError):
        return False
