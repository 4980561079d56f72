"""Drive one variant's workload over a running lab: taps, calls, cross traffic and the timeline, with
queue statistics sampled every second. Everything is scheduled in seconds from the workload's start
(``t0``) and every action is logged with the time it took effect.

The result (``testbed.results.WorkloadRecord``) is written to ``workload.json`` next to the per-call
packet files and the taps' records and pcaps; the scoring step reads only those files.
"""

from __future__ import annotations

import functools
import heapq
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from testbed.errors import LabError
from testbed.lab import Lab
from testbed.lab.queues import QueueSampler
from testbed.results import TrafficRecord, WorkloadRecord
from testbed.results.live import Monitor
from testbed.scenario.model import TimelineEvent, TrafficSpec
from testbed.scenario.router_template import RouterTemplate
from testbed.workload.agents import AgentError, Agents
from testbed.workload.call_plan import Call, expand_calls
from testbed.workload.calls import (
    check_setup_timeout,
    on_call_event,
    place_calls,
    prepare,
    prepare_speech,
    signal_through_lab,
)
from testbed.workload.clips import configured_loss
from testbed.workload.faults import agent_fault, child_fault
from testbed.workload.hangup import DRAIN_S, end_calls
from testbed.workload.live import LiveSampler
from testbed.workload.observation import queue_targets, start_taps, stop_taps

TRAFFIC_FIRST_PORT = 5100  # below the media range, so cross traffic never looks like media by port
TICK = 0.05


class Workload:
    """Calls, traffic and timeline of one scenario variant, over ``lab``; results go to ``out_dir``."""

    def __init__(
        self,
        lab: Lab,
        out_dir: Path,
        *,
        timeline_templates: dict[str, RouterTemplate] | None = None,
        progress: Callable[[str], None] | None = None,
        drain_s: float = DRAIN_S,
        monitor: Monitor | None = None,
        name: str = "",
    ):
        self.lab = lab
        self.drain_s = drain_s  # between stopping a call's media and hanging up
        self.scenario = lab.scenario
        self.out_dir = Path(out_dir)
        self.templates = timeline_templates or {}
        self.progress = progress or (lambda message: None)
        self.monitor, self.name = monitor, name  # the live view (``workload.live``), if one watches
        self.calls = expand_calls(self.scenario.calls, configured_loss(lab.links))
        for call in self.calls:
            call.use_turn(lab.turn.endpoint if lab.turn is not None else None)
        self.traffic = {spec.name: spec for spec in self.scenario.traffic}
        self.traffic_records: dict[str, TrafficRecord] = {}
        self.log: list[dict[str, Any]] = []
        self.t0 = 0.0
        self.phases: dict[str, float] = {}  # seconds per phase of the harness (bench/run_overhead.py)
        self._schedule_done: float | None = None
        self._actions: list[tuple[float, int, str, Callable[[], None]]] = []
        # what only bounds calls with a talk time (their fallback end, traffic that stops at the end):
        # once every call has ended, these run at once instead of at their bound
        self._bounds: set[int] = set()
        self._order = 0
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="workload")
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()
        self.fault: str | None = None  # the first fault (``workload.faults``): the workload stops there
        self._stopping: set[tuple[str, str]] = set()  # (node, child) the workload itself asked to stop

    # ------------------------------------------------------------ planning

    def duration(self) -> float:
        ends = [c.start + c.longest for c in self.calls]
        ends += [t.stop for t in self.scenario.traffic if t.stop is not None]
        ends += [e.at for e in self.scenario.timeline]
        return max(ends, default=0.0)

    def _at(self, t: float, what: str, action: Callable[[], None], bound: bool = False) -> None:
        self._order += 1
        heapq.heappush(self._actions, (t, self._order, what, action))
        if bound:
            self._bounds.add(self._order)

    def _plan(self, end: float) -> None:
        for at, calls in _by_time(self.calls, lambda c: c.start).items():
            self._at(at, f"{_names(calls)} start", functools.partial(self._submit, self._place, calls))
        # calls with a talk time end that long after they connect (_handle_events); this is their fallback
        for at, calls in _by_time(self.calls, lambda c: c.start + c.longest).items():
            self._at(
                at,
                f"{_names(calls)} end",
                functools.partial(self._submit, self._end, calls),
                bound=all(c.talk is not None for c in calls),
            )
        for spec in self.scenario.traffic:
            self._at(spec.start, f"traffic {spec.name} starts", functools.partial(self._start_traffic, spec))
            stop = spec.stop if spec.stop is not None else end
            self._at(
                stop,
                f"traffic {spec.name} stops",
                functools.partial(self._stop_traffic, spec.name),
                bound=spec.stop is None and any(c.talk is not None for c in self.calls),
            )
        for event in self.scenario.timeline:
            self._at(event.at, f"{event.action} at {event.at:g}s", functools.partial(self._timeline, event))

    # ------------------------------------------------------------ running

    def run(self) -> WorkloadRecord:
        started = time.perf_counter()
        end = self.duration()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "calls").mkdir(exist_ok=True)
        (self.out_dir / "taps").mkdir(exist_ok=True)
        sampler_targets = queue_targets(self.lab)
        prepare_speech(self.calls, self.out_dir / "speech")
        with self.lab.impairment_engines.polled(), Agents(self.lab.nodes) as self.agents:
            # every agent the workload will use, at once: none starts later, in the middle of the calls
            self.agents.start([*self._call_nodes(), *(n for t in self.traffic.values() for n in (t.to, t.from_))])
            service = self.lab.services.signalling
            if service is not None and self.calls:
                signal_through_lab(self.agents, self.calls, service.url, service.ca_file)
            # the taps' start-up overlaps the endpoints' preparing
            taps, taps_starting = start_taps(self.agents, self.lab, self._call_nodes(), self.out_dir)
            prepare(self.agents, self.calls)
            self.agents.promote_all()
            for future in taps_starting:
                future.result(30.0)
            with QueueSampler(sampler_targets, interval=1.0) as sampler:
                sampler_epoch = time.time()
                self.t0 = time.time()
                self.phases["agents_ready"] = time.perf_counter() - started
                ready = time.perf_counter()
                self._plan(end)
                self.progress(f"workload: {len(self.calls)} call(s), {len(self.traffic)} traffic flow(s), {end:g}s")
                with self._live(end):
                    self._loop()
                if self.fault is not None:
                    self._wind_down()
                schedule_done = self._schedule_done or time.perf_counter()
                self.phases["workload"] = schedule_done - ready
                self.phases["drain"] = time.perf_counter() - schedule_done
                collecting = time.perf_counter()
                self._pool.shutdown(wait=True)
                for name in list(self.traffic_records):
                    if self.traffic_records[name].stopped_at is None:
                        self._stop_traffic(name)
            tap_stats, lost = stop_taps(self.agents, taps, self.progress)
            for problem in lost:
                self._fail(problem)
            usage, endpoints = self._ask_agents("usage"), self._ask_agents("endpoint_stats")
        self._guard(self.lab.check_engines)
        self.phases["collect"] = time.perf_counter() - collecting
        shift = sampler_epoch - self.t0
        queues = [s.model_copy(update={"time": round(s.time + shift, 3)}) for s in sampler.samples]
        return WorkloadRecord.model_validate(
            {
                "t0": self.t0,
                "duration": end,
                "calls": [c.record() for c in self.calls],
                "traffic": list(self.traffic_records.values()),
                "timeline": self.log,
                "taps": dict(taps),
                "tap_stats": tap_stats,
                "queues": queues,
                "queue_classes": self.lab.class_names,
                "engines": self.lab.engine_counters(),
                "agents": usage,
                "endpoints": {
                    f"{node}/{kind}": stats for node, kinds in endpoints.items() for kind, stats in kinds.items()
                },
                "out_dir": str(self.out_dir),
                "fault": self.fault,
                "phases": {name: round(seconds, 4) for name, seconds in self.phases.items()},
            }
        )

    def _live(self, end: float) -> AbstractContextManager[object]:
        """The live view's sampler while the schedule runs (nothing without a monitor or calls)."""
        if self.monitor is None or not self.calls:
            return nullcontext()
        return LiveSampler(self.agents, self.calls, self.name, end, self.monitor)

    def _loop(self) -> None:
        while True:
            now = time.time() - self.t0
            if self._bounds and self.calls and all(call.ended for call in self.calls):
                self._actions = [
                    (now, order, what, action) if order in self._bounds else (at, order, what, action)
                    for at, order, what, action in self._actions
                ]
                heapq.heapify(self._actions)
                self._bounds.clear()
            while self._actions and self._actions[0][0] <= now and self.fault is None:
                at, _, what, action = heapq.heappop(self._actions)
                self._guard(action)
                self._log(at, what)
            self._handle_events()
            for call in self.calls:
                check_setup_timeout(call, time.time())
            self._guard(self.lab.check_engines)
            self._check_agents()
            for future in [f for f in self._futures if f.done()]:
                self._futures.remove(future)
                self._guard(future.result)  # a failed call action surfaces here, not silently
            if self.fault is not None:
                return
            if not self._actions and self._schedule_done is None:
                self._schedule_done = time.perf_counter()  # the scenario's last action: what follows is drain
            if not self._actions and not self._futures:
                return
            next_due = self._actions[0][0] if self._actions else now + TICK
            time.sleep(max(0.0, min(TICK, next_due - now)))

    # ------------------------------------------------------------ faults

    def _guard(self, step: Callable[[], object]) -> None:
        """Run one step of the schedule; a LabError (a process gone, a lab command failed) is the fault."""
        try:
            step()
        except LabError as exc:
            self._fail(str(exc))

    def _fail(self, message: str) -> None:
        """Record the first fault: the schedule stops, what runs is wound down, the record is kept."""
        with self._lock:
            if self.fault is not None:
                return
            at = round(time.time() - self.t0, 3) if self.t0 else 0.0
            self.fault = f"{message} (at {at:g} s of the workload)"
        self._log(at, "fault", reason=message)
        self.progress(f"fault: {self.fault}; stopping the workload, keeping what was recorded")

    def _check_agents(self) -> None:
        for node, client in self.agents.clients.items():
            if not client.alive():
                self._fail(agent_fault(node, client.process.poll()))

    def _wind_down(self) -> None:
        """After a fault: end every call still up (a side whose agent is gone is noted) and mark the calls
        the fault cut short, so scoring reads what was recorded and says why the rest is missing."""
        for future in self._futures:
            future.exception()  # placing or ending calls: let those in flight finish first
        gone = {node for node, client in self.agents.clients.items() if not client.alive()}
        self._guard(lambda: self._end([call for call in self.calls if not call.ended]))
        for call in self.calls:
            call.fail("failed", f"not set up: {self.fault}")
            if call.outcome == "connected" and {call.caller, call.callee} & gone:
                call.outcome, call.reason = "error", f"cut short: {self.fault}"

    def _ask_agents(self, cmd: str) -> dict[str, dict[str, Any]]:
        """``cmd``'s answer from every agent still there (a dead agent's CPU and statistics are lost)."""
        answers = {}
        for node, client in self.agents.clients.items():
            try:
                answers[node] = client.call(cmd)
            except AgentError as exc:
                if self.fault is None:
                    self._fail(str(exc))
        return answers

    def _submit(self, function: Callable[..., None], *args: Any) -> None:
        """Call setup and hangup wait on agents: they run beside the schedule, not in its way."""
        self._futures.append(self._pool.submit(function, *args))

    def _log(self, at: float, what: str, **details: Any) -> None:
        with self._lock:
            self.log.append({"at": at, "effective": round(time.time() - self.t0, 3), "what": what, **details})

    def _handle_events(self) -> None:
        by_id = {c.id: c for c in self.calls}
        for node, _, message in self.agents.drain_events():
            if message.get("event") == "child_exit" and (node, message.get("child", "")) not in self._stopping:
                self._fail(child_fault(node, message.get("child", "?"), message.get("code")))
            if message.get("event") == "call" and message.get("call") in by_id:
                call = by_id[message["call"]]
                before = call.outcome
                on_call_event(call, node, message)
                if call.outcome != before:
                    self._log(round(message["time"] - self.t0, 3), f"call {call.id} {call.outcome}", reason=call.reason)
                    if call.outcome == "connected" and call.talk is not None:
                        at = (call.connected_at or time.time()) - self.t0 + call.talk
                        self._at(
                            at,
                            f"{call.id} end (talk {call.talk:g}s)",
                            functools.partial(self._submit, self._end, [call]),
                        )
                    self.progress(
                        f"call {call.id}: {call.outcome}"
                        + (f" in {call.setup_s * 1000:.0f} ms" if call.setup_s else "")
                    )

    def _place(self, calls: list[Call]) -> None:
        place_calls(self.agents, calls, self.out_dir / "calls")

    def _end(self, calls: list[Call]) -> None:
        calls = [call for call in calls if call.take_end()]
        if not calls:
            return
        for call in calls:
            if call.outcome == "pending":
                check_setup_timeout(call, float("inf"))
        end_calls(self.agents, calls, drain_s=self.drain_s)

    # ------------------------------------------------------------ traffic

    def _start_traffic(self, spec: TrafficSpec) -> None:
        from testbed.workload import traffic

        index = list(self.traffic).index(spec.name)
        record = TrafficRecord(
            name=spec.name, kind=spec.kind, source=spec.from_, sink=spec.to, port=TRAFFIC_FIRST_PORT + index
        )
        self.traffic_records[spec.name] = record
        sink, source = traffic.commands_for(
            spec, str(self.lab.plan.address(spec.to)), record.port, python=self.lab.node(spec.from_).python
        )
        try:
            self.agents[spec.to].call("child_start", name=f"sink-{spec.name}", argv=sink)
            self.agents[spec.from_].call("child_start", name=f"source-{spec.name}", argv=source)
            record.started_at = time.time()
        except AgentError as exc:
            record.error = str(exc)
            self.progress(f"traffic {spec.name}: {exc}")

    def _stop_traffic(self, name: str) -> None:
        record = self.traffic_records.get(name)
        if record is None or record.stopped_at is not None:
            return
        record.stopped_at = time.time()
        self._stopping |= {(record.source, f"source-{name}"), (record.sink, f"sink-{name}")}
        for node, child, reports in (
            (record.source, f"source-{name}", record.source_reports),
            (record.sink, f"sink-{name}", record.sink_reports),
        ):
            try:
                reports.extend(self.agents[node].call("child_stop", timeout=30, name=child)["reports"])
            except AgentError as exc:
                record.error = record.error or str(exc)

    # ------------------------------------------------------------ timeline

    def _timeline(self, event: TimelineEvent) -> None:
        """One timeline event; the scenario's validation guarantees the field each action needs."""
        if event.action == "start_traffic" and event.traffic:
            self._start_traffic(self.traffic[event.traffic])
        elif event.action == "stop_traffic" and event.traffic:
            self._stop_traffic(event.traffic)
        elif event.action == "set_link" and event.link:
            self.lab.set_link(event.link, event.impairments or {})
        elif event.action == "set_router_template" and event.template:
            template = self.templates.get(event.template)
            if template is None:
                raise LabError(f"timeline: router template {event.template!r} was not loaded")
            self.lab.set_router_template(template)
        elif event.action == "flush_conntrack":
            flushed = self.lab.flush_conntrack(event.node)
            self.progress(f"timeline: {flushed} tracked connection(s) forgotten")
        self.progress(f"timeline: {event.action} at {time.time() - self.t0:.1f}s")

    # ------------------------------------------------------------ observation

    def _call_nodes(self) -> list[str]:
        return sorted({n for c in self.calls for n in (c.caller, c.callee)})


def _by_time(calls: list[Call], when: Callable[[Call], float]) -> dict[float, list[Call]]:
    """Calls that start (or end) at the same moment go to their agents as one batch."""
    groups: dict[float, list[Call]] = {}
    for call in calls:
        groups.setdefault(when(call), []).append(call)
    return groups


def _names(calls: list[Call]) -> str:
    if len(calls) == 1:
        return f"call {calls[0].id}"
    return f"calls {calls[0].id} .. {calls[-1].id} ({len(calls)})"
