"""An agent's children (packet taps, cross traffic) forked by the run's fork server instead of started
as fresh interpreters: they are ready in milliseconds and cost the calls no CPU for their imports.

The fork server (``testbed.lab.zygote``) gives each agent it forks a line of its own (the descriptor
in ``TESTBED_FORK_FD``). Over it the agent asks for a child in its own namespace with a pipe for the
child's output, and hears of its exit with its status and CPU time. ``ForkedChild`` has what the agent
uses of ``asyncio.subprocess.Process``: ``pid``, ``stdout``, ``returncode``, ``wait``, ``terminate``,
``kill``; signals go through a pidfd (never to a reused pid). An agent without the line (a container,
or started by hand) starts its children with ``asyncio.create_subprocess_exec`` as before.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from testbed.proc import FORK_FD_ENV, spawn_request

PROGRAMS = ("testbed.media.tap", "testbed.media.traffic")  # what the server forks for an agent
MAX_MESSAGE = 1 << 16


class ForkedChild:
    """One child forked for this agent; its exit arrives from the server."""

    def __init__(self, pid: int, stdout: asyncio.StreamReader) -> None:
        self.pid = pid
        self.stdout: asyncio.StreamReader | None = stdout
        self.returncode: int | None = None
        self.cpu_s = 0.0
        self._exited = asyncio.Event()
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self._pidfd = None  # gone already: its exit report follows

    def _ended(self, code: int, cpu_s: float) -> None:
        self.returncode, self.cpu_s = code, cpu_s
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self._exited.set()

    def _watch_alone(self, loop: asyncio.AbstractEventLoop) -> None:
        """Learn of the exit from the pidfd (readable once the process has ended)."""
        pidfd = self._pidfd
        if pidfd is None:
            self._ended(255, 0.0)
            return

        def ended() -> None:
            loop.remove_reader(pidfd)
            self._ended(255, 0.0)

        loop.add_reader(pidfd, ended)

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None and self._pidfd is not None:  # one thread: no race with _ended
            try:
                signal.pidfd_send_signal(self._pidfd, sig)
            except OSError:
                pass  # ended meanwhile

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkLine:
    """This agent's line to the fork server (``from_environment``: None where it has none)."""

    def __init__(self, fd: int) -> None:
        self._socket = socket.socket(fileno=fd)
        self._socket.set_inheritable(False)  # a browser or server the agent starts must not hold it
        self._socket.setblocking(False)
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._children: dict[int, ForkedChild] = {}
        self._early_exits: dict[int, tuple[int, float]] = {}  # exits read before their child's handle
        self.children_cpu_s = 0.0
        asyncio.get_running_loop().add_reader(self._socket.fileno(), self._read)

    @classmethod
    def from_environment(cls) -> ForkLine | None:
        fd = os.environ.pop(FORK_FD_ENV, None)  # popped: the agent's own exec'd children must not see it
        return cls(int(fd)) if fd is not None else None

    @staticmethod
    def handles(argv: Sequence[str]) -> bool:
        """Whether ``argv`` is ``python -m PROGRAM ...`` for a program the server forks."""
        return len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m" and argv[2] in PROGRAMS

    def _read(self) -> None:
        while True:
            try:
                data = self._socket.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._gone()
                return
            message = json.loads(data)
            if "exit" in message:
                child = self._children.pop(message["exit"], None)
                self.children_cpu_s += message.get("cpu_s", 0.0)
                if child is not None:
                    child._ended(message["code"], message.get("cpu_s", 0.0))
                else:
                    self._early_exits[message["exit"]] = (message["code"], message.get("cpu_s", 0.0))
            else:
                future = self._replies.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)

    def _gone(self) -> None:
        """The server ended: no exit will be told any more. Each child is watched through its own pidfd
        instead (status unknown: 255), and can still be stopped."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._socket.fileno())
        self._socket.close()
        for future in self._replies.values():
            if not future.done():
                future.set_exception(ConnectionError("the fork server is gone"))
        for child in self._children.values():
            child._watch_alone(loop)
        self._replies.clear()
        self._children.clear()

    async def spawn(self, argv: Sequence[str]) -> ForkedChild:
        """Fork ``argv`` (``python -m PROGRAM ARGS``) in this node: stdin /dev/null, stdout and stderr
        one pipe, read as a stream like ``create_subprocess_exec``'s."""
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        theirs = [os.open("/proc/self/ns/net", os.O_RDONLY), os.open(os.devnull, os.O_RDONLY), write_fd, write_fd]
        request_id = next(self._ids)
        reply: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._replies[request_id] = reply
        request = spawn_request(request_id, argv)
        try:
            socket.send_fds(self._socket, [json.dumps(request).encode()], theirs)
        except BaseException:
            self._replies.pop(request_id, None)
            os.close(read_fd)
            raise
        finally:
            for fd in {*theirs}:
                os.close(fd)
        try:
            answer = await reply
        except BaseException:
            os.close(read_fd)
            raise
        if "pid" not in answer:
            os.close(read_fd)
            raise OSError(f"the fork server could not start {argv[2]}: {answer.get('error')}")
        reader = asyncio.StreamReader(limit=16 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0))
        child = ForkedChild(answer["pid"], reader)
        early = self._early_exits.pop(child.pid, None)
        if early is not None:
            child._ended(*early)
        else:
            self._children[child.pid] = child
        return child
