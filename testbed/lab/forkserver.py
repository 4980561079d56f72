"""A pre-imported process that forks the lab's agents (and their taps and traffic) into their nodes.

Why: every agent used to be a fresh interpreter (``python -m ...``) that imported numpy and aiortc
before it could say ready, then encoded its clip, and its taps imported numpy: most of a second of two
cores at the start of each variant. The impairment engines stay fresh interpreters (forked from this
heap they released packets late more often; docs/design.md, "The fork server"). The fork server
imports all of that once, in the background, while the CLI loads the scenario and the first lab
comes up; a child is then a ``fork()`` that enters its node's network namespace (``setns``) and
calls the program's ``main`` (a few milliseconds).

How: the harness and the server share a ``SOCK_SEQPACKET`` socket pair (no listening socket, no path
anyone else can reach). A spawn request carries the program, its arguments, the environment, the
working directory and, as ``SCM_RIGHTS``, the namespace and the child's stdin/stdout/stderr. The
server stays single-threaded, holds a pidfd per child and reports each exit status, so the harness's
handle (a ``subprocess.Popen`` look-alike) has the same ``poll``/``wait``/``terminate`` as before;
signals go through a pidfd of the harness's own (never to a reused pid). When the harness goes away
the socket ends and the server exits; its children live in the lab's namespaces, where ``testbed
cleanup`` finds them as before.

Only the netns backend uses it (a container's processes run the image's Python: ``docker exec``).
Programs it does not know, and options it does not handle, take the ``subprocess.Popen`` path.
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
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from testbed.lab import zygote
from testbed.proc import spawn_request

READY_TIMEOUT = 30.0


class ForkedProcess(subprocess.Popen[Any]):
    """A child of the fork server, with the ``subprocess.Popen`` interface its callers use (``pid``,
    ``stdin``/``stdout``/``stderr``, ``poll``, ``wait``, ``send_signal``, ``terminate``, ``kill``).
    A subclass so that every caller typed for ``Popen`` takes it; ``Popen.__init__`` is not called."""

    def __init__(self, args: list[str]) -> None:  # noqa: D107 - filled in by ForkServer.spawn
        self.args = args
        self.program = args[2]  # python -m PROGRAM
        self.pid = 0
        self.returncode: int | None = None
        self.stdin: Any = None
        self.stdout: Any = None
        self.stderr: Any = None
        self._child_created = False  # Popen.__del__ must not try to reap it
        self._exited = threading.Event()
        self._pidfd: int | None = None
        self._pidfd_lock = threading.Lock()  # a signal never goes to a closed (and reused) descriptor

    def _started(self, pid: int) -> None:
        self.pid = pid
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._pidfd = None  # already gone: its exit report follows

    def _ended(self, code: int) -> None:
        with self._pidfd_lock:
            self.returncode = code
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        with self._pidfd_lock:
            if self.returncode is not None or self._pidfd is None:
                return
            try:
                signal.pidfd_send_signal(self._pidfd, sig)
            except OSError:
                pass  # it ended meanwhile

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __del__(self) -> None:
        pass


class ForkServer:
    """The harness's connection to one fork server: ``start()`` returns at once (the server warms up in
    the background); ``spawn`` waits for it to be ready the first time."""

    def __init__(self) -> None:
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = threading.Lock()
        self._ids = 0
        self._pending: dict[int, tuple[ForkedProcess, Future[None]]] = {}
        self._by_pid: dict[int, ForkedProcess] = {}
        self._ready: Future[list[str]] = Future()
        self.process = subprocess.Popen(
            [sys.executable, "-m", zygote.__name__, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=False,
        )
        theirs.close()
        self._reader = threading.Thread(target=self._read, name="fork server", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while True:
                message = self._control.recv(1 << 16)
                if not message:
                    break
                self._dispatch(json.loads(message))
        except OSError:
            pass
        finally:
            gone = ConnectionError("the fork server exited")
            if not self._ready.done():
                self._ready.set_exception(gone)
            with self._lock:
                pending, self._pending = self._pending, {}
                orphans, self._by_pid = self._by_pid, {}
            for _, future in pending.values():
                future.set_exception(gone)
            for child in orphans.values():
                threading.Thread(target=_watch_orphan, args=(child,), daemon=True).start()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "ready" in message:
            self._ready.set_result(message["warm_failed"])
        elif "exit" in message:
            with self._lock:
                child = self._by_pid.pop(message["exit"], None)
            if child is not None:
                child._ended(message["code"])
        else:
            with self._lock:
                child, future = self._pending.pop(message["id"])
                if "pid" in message:
                    child._started(message["pid"])
                    self._by_pid[message["pid"]] = child
            if "pid" in message:
                future.set_result(None)
            else:
                future.set_exception(OSError(f"the fork server could not start {child.program}: {message['error']}"))

    def handles(self, argv: Sequence[str], kwargs: dict[str, Any]) -> bool:
        """Whether ``argv`` (``python -m MODULE ...``) with Popen ``kwargs`` is a child this server starts."""
        known = {"stdin", "stdout", "stderr", "text", "bufsize", "start_new_session"}
        return (
            len(argv) >= 3
            and argv[0] == sys.executable
            and argv[1] == "-m"
            and argv[2] in zygote.ENTRIES
            and set(kwargs) <= known
            and all(kwargs.get(name) in (None, subprocess.PIPE, subprocess.DEVNULL) for name in ("stdin", "stdout"))
            and kwargs.get("stderr") in (None, subprocess.PIPE, subprocess.DEVNULL, subprocess.STDOUT)
        )

    def spawn(self, netns_path: str | os.PathLike[str], argv: Sequence[str], **kwargs: Any) -> ForkedProcess:
        """Start ``argv`` (``python -m MODULE ARGS``) inside the namespace at ``netns_path``."""
        self._ready.result(READY_TIMEOUT)
        child = ForkedProcess(list(argv))
        text = bool(kwargs.get("text"))
        theirs: list[int] = []
        try:
            theirs.append(os.open(netns_path, os.O_RDONLY))
            stdin_fd, child.stdin = _end(kwargs.get("stdin"), 0, text, kwargs.get("bufsize", -1), writer=True)
            stdout_fd, child.stdout = _end(kwargs.get("stdout"), 1, text, -1, writer=False)
            if kwargs.get("stderr") == subprocess.STDOUT:
                stderr_fd, child.stderr = os.dup(stdout_fd), None
            else:
                stderr_fd, child.stderr = _end(kwargs.get("stderr"), 2, text, -1, writer=False)
            theirs += [stdin_fd, stdout_fd, stderr_fd]
            future: Future[None] = Future()
            with self._lock:
                self._ids += 1
                request_id = self._ids
                self._pending[request_id] = (child, future)
            socket.send_fds(self._control, [json.dumps(spawn_request(request_id, argv)).encode()], theirs)
        except BaseException:
            with self._lock:
                self._pending = {k: v for k, v in self._pending.items() if v[0] is not child}
            for stream in (child.stdin, child.stdout, child.stderr):
                if stream is not None:
                    stream.close()
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        try:
            future.result(READY_TIMEOUT)
        except BaseException:
            for stream in (child.stdin, child.stdout, child.stderr):
                if stream is not None:
                    stream.close()
            raise
        return child

    def preload_clips(self, clips: Sequence[tuple[str, str, Sequence[Any]]]) -> None:
        """Have the server encode these clips (codec, clip, Opus settings) now, in the background; agents
        forked later inherit them (``testbed.lab.zygote``). Returns at once."""
        if clips:
            self._control.send(json.dumps({"op": "preload", "clips": [list(c) for c in clips]}).encode())

    def close(self) -> None:
        """End the server (its children run on; each is stopped by whoever started it)."""
        try:
            self._control.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._control.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)


def _end(how: Any, std: int, text: bool, bufsize: int, *, writer: bool) -> tuple[int, Any]:
    """The child's descriptor for one of its stdio streams, and the harness's file object (PIPE only)."""
    if how == subprocess.PIPE:
        read_fd, write_fd = os.pipe()
        mine, theirs = (write_fd, read_fd) if writer else (read_fd, write_fd)
        mode = ("w" if writer else "r") + ("" if text else "b")
        buffering = 1 if (text and bufsize == 1) else -1
        stream: Any = open(mine, mode, buffering=buffering, encoding="utf-8" if text else None)  # noqa: SIM115
        return theirs, stream
    if how == subprocess.DEVNULL:
        return os.open(os.devnull, os.O_RDWR), None
    return os.dup(std), None


def _watch_orphan(child: ForkedProcess) -> None:
    """The server died before its child: wait on the child's pidfd; its status is unknown (255)."""
    pidfd = child._pidfd
    if pidfd is not None:
        select.select([pidfd], [], [])
    child._ended(255)


_current: ForkServer | None = None


def current() -> ForkServer | None:
    """The fork server of this harness process, if a run started one."""
    return _current


@contextmanager
def serving(backend: str = "netns") -> Iterator[ForkServer | None]:
    """A fork server for the enclosed runs on the netns backend (started now, it warms up while they
    build their labs; one already serving is reused). Other backends: None."""
    global _current
    if os.environ.get("TESTBED_FORK_SERVER") == "0":  # every child a fresh interpreter, as before the server
        yield None
        return
    if backend != "netns" or _current is not None:
        yield _current if backend == "netns" else None
        return
    server = _current = ForkServer()
    try:
        yield server
    finally:
        _current = None
        server.close()
