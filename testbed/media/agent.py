"""The agent: one process per node, started by the harness inside the node, driven over JSON lines.

Requests come on stdin, one JSON object per line, each with an ``id`` and a ``cmd``; the reply carries
the same ``id`` with ``ok`` and a ``result`` or an ``error``. Events (call connected, dropped, a child's
report) are lines with an ``event`` key and no ``id``. Calls run in this process's event loop; cross
traffic and packet taps run as child processes (one GIL each, so they never delay the audio), which
the agent starts, stops and reports on. When stdin closes or on SIGTERM the agent ends every call and
child, so nothing outlives it.

``python -m testbed.media.agent --node NAME``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
from typing import Any

from testbed.errors import ExitCode
from testbed.media.forked import ForkedChild, ForkLine
from testbed.proc import AGENT, STOP_SIGNALS, STOP_TIMEOUT, next_event, set_realtime, stop_child, write_message

CHILD_STOP_TIMEOUT = STOP_TIMEOUT


def _failed(descriptions: list[Any]) -> bool:
    return any(isinstance(d, dict) and "error" in d for d in descriptions)


def _batch_failure(descriptions: list[Any], others: str) -> list[dict[str, Any]]:
    """Each leg's own error where its signalling failed; ``others`` for the legs held back with them."""
    return [d if isinstance(d, dict) and "error" in d else {"error": others} for d in descriptions]


class Agent:
    def __init__(self, node: str):
        self.node = node
        self.endpoints: dict[str, Any] = {}  # kind -> the endpoint serving this node's legs of that kind
        self.signalling: Any = None  # a media.signalling.Signalling once the lab carries signalling
        self.children: dict[str, asyncio.subprocess.Process | ForkedChild] = {}
        self.fork: ForkLine | None = None  # the line to the run's fork server, where it has one
        self.child_reports: dict[str, list[dict[str, Any]]] = {}
        self.stopping = asyncio.Event()

    # ------------------------------------------------------------ wire

    def emit(self, message: dict[str, Any]) -> None:
        write_message(message)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.fork = ForkLine.from_environment()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.stopping.set)
        reader = asyncio.StreamReader(limit=16 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        self.emit({"event": "ready", "node": self.node, "pid": os.getpid()})
        tasks: set[asyncio.Task[None]] = set()
        stop = asyncio.ensure_future(self.stopping.wait())
        while not self.stopping.is_set():
            line_task = asyncio.ensure_future(reader.readline())
            done, _ = await asyncio.wait({line_task, stop}, return_when=asyncio.FIRST_COMPLETED)
            if stop in done:
                line_task.cancel()
                break
            line = line_task.result()
            if not line:
                break  # the harness went away
            task = asyncio.ensure_future(self.handle(line))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await self.shutdown()

    async def handle(self, line: bytes) -> None:
        try:
            request = json.loads(line)
            handler = getattr(self, f"cmd_{request['cmd']}", None)
            if handler is None:
                raise ValueError(f"unknown command {request['cmd']!r}")
            result = await handler(**request.get("args", {}))
            self.emit({"id": request.get("id"), "ok": True, "result": result})
        except Exception as exc:  # the harness shows it; the agent keeps serving
            self.emit(
                {
                    "id": request.get("id") if isinstance(locals().get("request"), dict) else None,
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            )

    # ------------------------------------------------------------ call endpoints

    def _endpoint(self, kind: str) -> Any:
        """This node's endpoint of ``kind``, created on first use (it serves every leg of that kind)."""
        from testbed.media import endpoints

        if kind not in self.endpoints:
            self.endpoints[kind] = endpoints.create(kind, self.emit)
        return self.endpoints[kind]

    @staticmethod
    def _legs(legs: list[dict[str, Any]]) -> list[Any]:
        from testbed.media.endpoints import LegSpec

        return [LegSpec(**leg) for leg in legs]

    async def cmd_endpoint_prepare(self, kind: str, **ahead: Any) -> dict[str, Any]:
        """Load the endpoint and encode the clip (launch the browsers) now, so none of that counts as a
        call's setup time (``ahead``: a ``Preparation``'s fields)."""
        from testbed.media.endpoints import Preparation

        await self._endpoint(kind).prepare(Preparation(**ahead))
        return {}

    async def cmd_signalling(self, url: str, ca_file: str, wait_s: float) -> dict[str, Any]:
        """Carry this node's offers and answers through the lab's signalling service from now on: the
        harness then relays only keys (``{"signalled": KEY}``) and the descriptions cross the network."""
        from testbed.media.signalling import Signalling

        self.signalling = Signalling(url, ca_file, wait_s)
        return {}

    async def _signalled(self, calls: list[str], what: str, descriptions: list[Any]) -> list[Any]:
        if self.signalling is None:
            return descriptions
        from testbed.media.signalling import SignallingError

        try:
            return list(await self.signalling.publish(calls, what, descriptions))
        except SignallingError as exc:
            return [{"error": str(exc)}] * len(calls)

    async def _fetched(self, calls: list[str], remotes: list[Any]) -> list[Any]:
        if self.signalling is None:
            return remotes
        from testbed.media.signalling import SignallingError

        try:
            return list(await self.signalling.fetch(calls, remotes))
        except SignallingError as exc:
            return [{"error": str(exc)}] * len(calls)

    async def cmd_endpoint_open(self, kind: str, legs: list[dict[str, Any]]) -> dict[str, Any]:
        offers = await self._endpoint(kind).open(self._legs(legs))
        return {"legs": await self._signalled([leg["call"] for leg in legs], "offer", offers)}

    async def cmd_endpoint_answer(
        self, kind: str, legs: list[dict[str, Any]], remotes: list[dict[str, Any]]
    ) -> dict[str, Any]:
        calls = [leg["call"] for leg in legs]
        offers = await self._fetched(calls, remotes)
        if _failed(offers):  # no leg without its offer: report which failed, and the rest as not answered
            return {"legs": _batch_failure(offers, "not answered: the batch's signalling failed")}
        answers = await self._endpoint(kind).answer(self._legs(legs), offers)
        return {"legs": await self._signalled(calls, "answer", answers)}

    async def cmd_endpoint_accept(self, kind: str, calls: list[str], remotes: list[dict[str, Any]]) -> dict[str, Any]:
        answers = await self._fetched(calls, remotes)
        if _failed(answers):
            return {"legs": _batch_failure(answers, "not accepted: the batch's signalling failed")}
        return {"legs": await self._endpoint(kind).accept(calls, answers)}

    async def cmd_endpoint_stop_media(self, kind: str, calls: list[str]) -> dict[str, Any]:
        return {"legs": await self._endpoint(kind).stop_media(calls)}

    async def cmd_endpoint_quiet_for(self, kind: str, calls: list[str]) -> dict[str, Any]:
        return {"legs": await self._endpoint(kind).quiet_for(calls)}

    async def cmd_endpoint_hang_up(self, kind: str, calls: list[str]) -> dict[str, Any]:
        summaries = await self._endpoint(kind).hang_up(calls)
        seconds = self.signalling.seconds if self.signalling is not None else {}
        for summary in summaries:
            if isinstance(summary, dict) and summary.get("call") in seconds:
                summary.setdefault("timings", {})["signalling_s"] = seconds[summary["call"]]
        return {"legs": summaries}

    async def cmd_lab_trust(self, ca_file: str, spki: str, hosts: list[str]) -> dict[str, Any]:
        """Trust the lab's CA for TLS (TURN over TLS): aioice verifies with Python's default context,
        which reads ``SSL_CERT_FILE``; a browser launched after this reaches the lab's TLS servers
        (``TESTBED_LAB_HOSTS``) and allows their key (``TESTBED_LAB_SPKI``). Set before any endpoint is
        prepared, for this agent's process only."""
        os.environ["SSL_CERT_FILE"] = ca_file
        os.environ["TESTBED_LAB_SPKI"] = spki
        os.environ["TESTBED_LAB_HOSTS"] = ",".join(hosts)
        return {}

    async def cmd_realtime(self) -> dict[str, Any]:
        """Media is paced in 20 ms steps: at a real-time priority the agent sends on time even while cross
        traffic keeps the CPUs busy. Asked for once the endpoints are prepared: importing WebRTC and
        encoding clips at a real-time priority would starve everything else for a second. Children
        (traffic, taps) start at normal priority. Where not permitted (a container) the harness sets it
        from the host."""
        return {"promoted": set_realtime(AGENT)}

    async def cmd_endpoint_stats(self) -> dict[str, Any]:
        return {kind: endpoint.stats() for kind, endpoint in self.endpoints.items()}

    async def cmd_live(self) -> dict[str, Any]:
        """Every open leg's running counts (``media.live``), for the harness's live view."""
        return {"legs": [leg for endpoint in self.endpoints.values() for leg in endpoint.live()]}

    # ------------------------------------------------------------ children: traffic and taps

    async def cmd_child_start(self, name: str, argv: list[str]) -> dict[str, Any]:
        """Start a child process (a traffic source or sink, a tap) and wait for its ready line."""
        if name in self.children:
            raise ValueError(f"{name!r} runs already in node {self.node}")
        process: asyncio.subprocess.Process | ForkedChild
        if self.fork is not None and self.fork.handles(argv):  # forked: ready in milliseconds
            process = await self.fork.spawn(argv)
        else:
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, limit=16 << 20
            )
        self.children[name] = process
        self.child_reports[name] = []
        assert process.stdout is not None
        first = await next_event(process.stdout, timeout=15)
        if first is None or first.get("event") != "ready":
            await self._end_child(name)
            raise RuntimeError(f"{name!r} did not start: {first}")
        asyncio.ensure_future(self._relay(name, process))
        return {"pid": process.pid}

    async def _relay(self, name: str, process: asyncio.subprocess.Process | ForkedChild) -> None:
        assert process.stdout is not None
        while True:
            message = await next_event(process.stdout)
            if message is None:
                break
            self.child_reports[name].append(message)
            self.emit({"event": "child", "child": name, **message})
        code = await process.wait()
        self.emit({"event": "child_exit", "child": name, "code": code})

    async def cmd_child_stop(self, name: str) -> dict[str, Any]:
        """Stop a child (SIGTERM, then SIGKILL) and return every report line it printed."""
        if name not in self.children:
            raise ValueError(f"nothing called {name!r} runs in node {self.node}")
        code = await self._end_child(name)
        await asyncio.sleep(0)  # let the relay pass on the last lines
        return {"code": code, "reports": self.child_reports.pop(name, [])}

    async def cmd_child_wait(self, name: str, seconds: float) -> dict[str, Any]:
        """Wait for a child that ends by itself (a source with a duration), at most ``seconds``."""
        process = self.children[name]
        code: int | None
        try:
            code = await asyncio.wait_for(process.wait(), seconds)
        except TimeoutError:
            code = await self._end_child(name)
        self.children.pop(name, None)
        await asyncio.sleep(0.05)
        return {"code": code, "reports": self.child_reports.pop(name, [])}

    async def _end_child(self, name: str) -> int | None:
        process = self.children.pop(name, None)
        if process is None:
            return None
        return await stop_child(process, CHILD_STOP_TIMEOUT)

    async def cmd_usage(self) -> dict[str, Any]:
        """CPU seconds this agent and its finished children used: what the harness itself costs."""
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "cpu_s": round(own.ru_utime + own.ru_stime, 3),
            "children_cpu_s": round(
                children.ru_utime + children.ru_stime + (self.fork.children_cpu_s if self.fork else 0.0), 3
            ),
            "max_rss_kb": own.ru_maxrss,
        }

    async def cmd_ping(self) -> dict[str, Any]:
        endpoints = {kind: endpoint.stats() for kind, endpoint in self.endpoints.items()}
        return {"node": self.node, "endpoints": endpoints, "children": list(self.children)}

    # ------------------------------------------------------------ the end

    async def shutdown(self) -> None:
        for endpoint in self.endpoints.values():
            await endpoint.close()
        for name in list(self.children):
            await self._end_child(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="testbed node agent")
    parser.add_argument("--node", required=True)
    args = parser.parse_args(argv)
    asyncio.run(Agent(args.node).serve())
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
