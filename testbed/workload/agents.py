"""The harness side of the agents: start one agent per node, send requests, collect events.

Replies are matched to requests by id; events (call state changes, children's reports) are queued
with the node they came from. A reader thread per agent keeps its stdout drained, so an agent never
blocks on a full pipe however long the run.
"""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

from testbed.errors import LabError
from testbed.lab.backends import Node
from testbed.lab.priority import promote
from testbed.proc import AGENT, follow, stop_process

READY_TIMEOUT = 30.0
Event = tuple[str, float, dict[str, Any]]  # node, when it arrived (time.time()), the event


class AgentError(LabError):
    """An agent refused or failed a request."""


class AgentClient:
    """One agent process inside one node."""

    def __init__(self, node: Node, events: queue.Queue[Event], wait: bool = True):
        self.node = node
        self.events = events
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._writing = threading.Lock()  # requests come from several threads (calls' pool, the live view)
        self._ready: Future[bool] = Future()
        self.process = node.popen(
            [node.python, "-m", AGENT.marker, "--node", node.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._stderr: list[str] = []
        assert self.process.stdout is not None
        follow(self.process.stdout, self._handle, name=f"agent {node.name}", on_end=self._gone)
        threading.Thread(target=self._read_stderr, name=f"agent {node.name} stderr", daemon=True).start()
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait for the agent's ready line (``wait=False`` agents: several start at once this way)."""
        try:
            self._ready.result(READY_TIMEOUT)
        except Exception:
            self.close()
            raise LabError(f"the agent in node {self.node.name} did not start: {self.last_words()}") from None

    def promote(self) -> None:
        """Real-time priority for the agent's pacing; from the host too, since containers may not set it."""
        if not self.call("realtime").get("promoted"):
            promote(self.node.netns_path, AGENT)

    def _handle(self, message: dict[str, Any]) -> None:
        """A reply (resolves its request's Future), the ready line, or an event for the queue."""
        if "id" in message and message["id"] is not None:
            with self._lock:
                future = self._pending.pop(message["id"], None)
            if future is not None:
                if message.get("ok"):
                    future.set_result(message.get("result", {}))
                else:
                    future.set_exception(AgentError(f"agent {self.node.name}: {message.get('error')}"))
        elif message.get("event") == "ready":
            self._ready.set_result(True)
        else:
            self.events.put((self.node.name, time.time(), message))

    def _gone(self) -> None:
        """The agent's stdout ended: fail whatever still waits for it."""
        gone = AgentError(f"the agent in node {self.node.name} exited ({self.last_words()})")
        if not self._ready.done():
            self._ready.set_exception(gone)
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(gone)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line.rstrip())
            del self._stderr[:-20]

    def last_words(self) -> str:
        return self._stderr[-1] if self._stderr else f"exit status {self.process.poll()}"

    def request(self, cmd: str, **args: Any) -> Future[dict[str, Any]]:
        """Send a request; the Future resolves with the result (or AgentError)."""
        future: Future[dict[str, Any]] = Future()
        request_id = next(self._ids)
        with self._lock:
            self._pending[request_id] = future
        try:
            assert self.process.stdin is not None
            with self._writing:  # one whole line at a time: a text stream is not safe for threads
                self.process.stdin.write(json.dumps({"id": request_id, "cmd": cmd, "args": args}) + "\n")
                self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            with self._lock:
                self._pending.pop(request_id, None)
            future.set_exception(AgentError(f"the agent in node {self.node.name} is gone ({self.last_words()})"))
        return future

    def call(self, cmd: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        """Send a request and wait for its result."""
        try:
            return self.request(cmd, **args).result(timeout)
        except TimeoutError:
            raise AgentError(f"agent {self.node.name}: {cmd} took longer than {timeout:g}s") from None

    def alive(self) -> bool:
        return self.process.poll() is None

    def ask_to_finish(self) -> None:
        """Close the agent's stdin: it ends its calls and children and exits."""
        try:
            if self.process.stdin and not self.process.stdin.closed:
                self.process.stdin.close()
        except OSError:
            pass

    def close(self, timeout: float = 15.0) -> None:
        """Ask the agent to finish, then make sure it is gone."""
        self.ask_to_finish()
        stop_process(self.process, timeout, terminate=False)


class Agents:
    """Agents for a set of nodes, started on first use and all closed together."""

    def __init__(self, nodes: dict[str, Node]):
        self.nodes = nodes
        self.events: queue.Queue[Event] = queue.Queue()
        self.clients: dict[str, AgentClient] = {}

    def __getitem__(self, node: str) -> AgentClient:
        if node not in self.clients:
            self.clients[node] = AgentClient(self.nodes[node], self.events)
        return self.clients[node]

    def start(self, nodes: Iterable[str]) -> None:
        """Start the agents of ``nodes`` at once (their interpreters' start-up overlaps) and wait for all."""
        started = []
        for node in dict.fromkeys(nodes):
            if node not in self.clients:
                self.clients[node] = AgentClient(self.nodes[node], self.events, wait=False)
                started.append(self.clients[node])
        for client in started:
            client.wait_ready()

    def promote_all(self) -> None:
        """Real-time priority for every agent started so far (once their endpoints are prepared)."""
        for client in self.clients.values():
            client.promote()

    def drain_events(self) -> list[Event]:
        drained = []
        while True:
            try:
                drained.append(self.events.get_nowait())
            except queue.Empty:
                return drained

    def close(self) -> None:
        """Ask every agent to finish at once (each ends its calls and children), then wait for each."""
        for client in self.clients.values():
            client.ask_to_finish()
        for client in self.clients.values():
            client.close()
        self.clients.clear()

    def __enter__(self) -> Agents:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
