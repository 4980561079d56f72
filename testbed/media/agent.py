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
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

CHILD_STOP_TIMEOUT = 10.0
AGENT_PRIORITY = 5  # below the impairment engines (10)


class Agent:
    def __init__(self, node: str):
        self.node = node
        self.calls: dict[str, Any] = {}
        self.children: dict[str, asyncio.subprocess.Process] = {}
        self.child_reports: dict[str, list[dict[str, Any]]] = {}
        self.out_lock = asyncio.Lock()
        self.stopping = asyncio.Event()

    # ------------------------------------------------------------ wire

    def emit(self, message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        reader = asyncio.StreamReader(limit=16 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        self.emit({"event": "ready", "node": self.node, "pid": os.getpid()})
        tasks: set[asyncio.Task] = set()
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

    # ------------------------------------------------------------ calls

    def _endpoint(self, call: str, codec: str, dscp: int, clip: str, out_dir: str):
        from testbed.media.call import CallEndpoint

        if call in self.calls:
            raise ValueError(f"call {call!r} exists already in node {self.node}")
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        endpoint = CallEndpoint(call, codec, dscp, clip, Path(out_dir), self.emit)
        self.calls[call] = endpoint
        return endpoint

    async def cmd_prepare(self, codec: str, clip: str) -> dict[str, Any]:
        """Import aiortc and encode the clip now, so none of that counts as a call's setup time."""
        from testbed.media.call import encoded_clip

        return {"frames": len(encoded_clip(codec, clip))}

    async def cmd_call_offer(self, call: str, codec: str, dscp: int, clip: str, out_dir: str) -> dict[str, Any]:
        return {"sdp": await self._endpoint(call, codec, dscp, clip, out_dir).offer()}

    async def cmd_call_answer(
        self, call: str, codec: str, dscp: int, clip: str, out_dir: str, sdp: str
    ) -> dict[str, Any]:
        return {"sdp": await self._endpoint(call, codec, dscp, clip, out_dir).answer(sdp)}

    async def cmd_call_accept(self, call: str, sdp: str) -> dict[str, Any]:
        await self.calls[call].accept(sdp)
        return {}

    async def cmd_call_hangup(self, call: str) -> dict[str, Any]:
        endpoint = self.calls.pop(call, None)
        if endpoint is None:
            raise ValueError(f"no call {call!r} in node {self.node}")
        return await endpoint.hangup()

    # ------------------------------------------------------------ children: traffic and taps

    async def cmd_child_start(self, name: str, argv: list[str]) -> dict[str, Any]:
        """Start a child process (a traffic source or sink, a tap) and wait for its ready line."""
        if name in self.children:
            raise ValueError(f"{name!r} runs already in node {self.node}")
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, limit=16 << 20
        )
        self.children[name] = process
        self.child_reports[name] = []
        first = await self._child_line(name, process, timeout=15)
        if first is None or first.get("event") != "ready":
            await self._end_child(name)
            raise RuntimeError(f"{name!r} did not start: {first}")
        asyncio.ensure_future(self._relay(name, process))
        return {"pid": process.pid}

    async def _child_line(
        self, name: str, process: asyncio.subprocess.Process, timeout: float | None = None
    ) -> dict[str, Any] | None:
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout)
        except TimeoutError:
            return None
        if not line:
            return None
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            return {"event": "output", "text": line.decode(errors="replace").rstrip()}

    async def _relay(self, name: str, process: asyncio.subprocess.Process) -> None:
        while True:
            message = await self._child_line(name, process)
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
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), CHILD_STOP_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
        return process.returncode

    async def cmd_usage(self) -> dict[str, Any]:
        """CPU seconds this agent and its finished children used: what the harness itself costs."""
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "cpu_s": round(own.ru_utime + own.ru_stime, 3),
            "children_cpu_s": round(children.ru_utime + children.ru_stime, 3),
            "max_rss_kb": own.ru_maxrss,
        }

    async def cmd_ping(self) -> dict[str, Any]:
        return {"node": self.node, "calls": list(self.calls), "children": list(self.children)}

    # ------------------------------------------------------------ the end

    async def shutdown(self) -> None:
        for call in list(self.calls):
            try:
                await asyncio.wait_for(self.calls.pop(call).hangup(), 5)
            except Exception:
                pass
        for name in list(self.children):
            await self._end_child(name)


def realtime() -> None:
    """Media is paced in 20 ms steps: at a real-time priority the agent sends on time even while cross
    traffic processes keep the CPUs busy. It sleeps between packets, so it cannot starve the machine;
    the impairment engines run above it (they decide the network's timing)."""
    try:
        # children (traffic, taps) start at normal priority: a spinning traffic source must never be real-time
        os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(AGENT_PRIORITY))
    except (OSError, AttributeError):
        pass  # not permitted (e.g. in a container without the capability): normal priority still works


def main() -> None:
    parser = argparse.ArgumentParser(description="testbed node agent")
    parser.add_argument("--node", required=True)
    args = parser.parse_args()
    realtime()
    asyncio.run(Agent(args.node).serve())


if __name__ == "__main__":
    main()
