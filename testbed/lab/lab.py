"""``Lab``: bring a scenario's network up and always take it down again.

Teardown runs on success, on any exception (also one in the middle of set-up), on Ctrl-C and on
SIGTERM/SIGHUP; a second signal during teardown is ignored so teardown completes. What cannot be
cleaned up in-process (SIGKILL) is left listed in the registry for ``testbed cleanup``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from testbed.errors import CapabilityError, InputError, Interrupted, LabError
from testbed.lab import impair, links, qos, tunnels
from testbed.lab.cleanup import remove_run
from testbed.lab.engine.harness import EngineProcess
from testbed.lab.nodes import Node, make_backend
from testbed.lab.registry import Registry, RunRecord
from testbed.lab.topology import AddressPlan, plan_addresses
from testbed.scenario.model import Impairment, Scenario
from testbed.scenario.router_template import RouterTemplate

_TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"received {signal.Signals(signum).name}")


@contextmanager
def signals_raise() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP unwind like Ctrl-C (only possible on the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in _TERMINATING_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Teardown must finish: a second Ctrl-C or SIGTERM is ignored while inside."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = (signal.SIGINT, *_TERMINATING_SIGNALS)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in caught}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class EngineFailed(LabError):
    """An impairment engine died while the lab ran: its link is no longer impaired."""


ENGINE_FAILED_SIGNAL = signal.SIGUSR1  # the watchdog's way to interrupt whatever the main thread waits on


@contextmanager
def engine_failures_raise(lab: Lab) -> Iterator[None]:
    """While inside, the lab's watchdog can raise EngineFailed in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_failure(signum: int, frame: FrameType | None) -> None:
        if lab.engine_failure:
            raise EngineFailed(lab.engine_failure)

    previous = signal.signal(ENGINE_FAILED_SIGNAL, raise_failure)
    try:
        yield
    finally:
        signal.signal(ENGINE_FAILED_SIGNAL, previous)


def switch_name(link: str) -> str:
    """The node that holds a segment's bridge; '_' cannot occur in user node names, so no clash."""
    return f"sw_{link}"


class Lab:
    """The emulated network of one scenario. Use as ``with Lab(scenario) as lab: ...``."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        backend: str | None = None,
        registry: Registry | None = None,
        keep: bool = False,
        purpose: str = "lab",
        router_template: RouterTemplate | None = None,
        impairment_engine: str | None = None,
        shared_dirs: Sequence[Path] = (),
    ):
        self.scenario = scenario
        self.shared_dirs = list(shared_dirs)  # host directories the nodes' processes write into
        # the links as they are now: the timeline's set_link changes them while the lab runs
        self.links: dict[str, dict[str, Impairment]] = {link: dict(ends) for link, ends in scenario.links.items()}
        self.engine_choice = impairment_engine or scenario.impairment_engine
        if self.engine_choice not in ("auto", "netem", "userspace"):
            raise InputError(f"impairment engine {self.engine_choice!r}: use auto, netem or userspace")
        self.kernel_netem: bool | None = None  # probed on first need
        self.engines: dict[tuple[str, str], EngineProcess] = {}
        self.engine_stats: dict[str, dict[str, Any]] = {}
        self.engine_failure: str | None = None
        self._queue_numbers: dict[str, int] = {}
        self._watchdog: threading.Thread | None = None
        self._watchdog_stop = threading.Event()
        self._main_thread = threading.main_thread().ident
        self.router_template = router_template
        self.router = qos.find_router(scenario) if router_template is not None else None
        self.class_names: dict[str, dict[str, dict[str, str]]] = {}  # node -> interface -> handle -> class
        self.registry = registry or Registry()
        self.backend_name = backend or scenario.backend
        self.keep = keep
        self.purpose = purpose
        self.plan: AddressPlan = plan_addresses(scenario.topology)
        self.nodes: dict[str, Node] = {}
        self.run: RunRecord | None = None
        self.netlink = links.Netlink()
        self.up_seconds: float | None = None
        self._signals = None
        self._owner_pid = os.getpid()

    @property
    def run_id(self) -> str:
        if self.run is None:
            raise LabError("the lab is not up")
        return self.run.run_id

    def node(self, name: str) -> Node:
        return self.nodes[name]

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Lab:
        self._signals = signals_raise()
        self._signals.__enter__()
        self._engine_signal = engine_failures_raise(self)
        self._engine_signal.__enter__()
        try:
            self.up()
        except BaseException:
            self._engine_signal.__exit__(None, None, None)
            self._signals.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            failure = self.engine_failure or self._engine_check()
            if not self.keep or exc_info[0] is not None or failure:
                self.down()
            if failure and not isinstance(exc_info[1], EngineFailed):
                raise EngineFailed(failure)
        finally:
            self._engine_signal.__exit__(None, None, None)
            if self._signals is not None:
                self._signals.__exit__(None, None, None)
                self._signals = None

    def up(self) -> None:
        """Create nodes, wire segments, set addresses and routes. On any failure, undo what was done."""
        if os.geteuid() != 0:
            raise CapabilityError("building a lab needs root (network namespaces); run with sudo")
        started = time.perf_counter()
        backend = make_backend(self.backend_name, self.registry, self.shared_dirs)
        self.run = self.registry.new_run(self.purpose, self.backend_name, kept=self.keep)
        try:
            for name, kind in self.plan.nodes.items():
                self.nodes[name] = backend.create_node(self.run, name, kind)
            for segment in self.plan.segments.values():
                if segment.switched:
                    self.nodes[switch_name(segment.name)] = backend.create_node(
                        self.run, switch_name(segment.name), "switch"
                    )
            for node in self.nodes.values():
                links.bring_up_loopback(self.netlink, node)
            for segment in self.plan.segments.values():
                switch = self.nodes.get(switch_name(segment.name)) if segment.switched else None
                links.wire_segment(self.netlink, segment, self.nodes, switch)
            links.configure_addresses(self.netlink, self.plan, self.nodes)
            tunnels.wire(self.netlink, self.scenario.topology, self.plan, self.nodes)
            self.apply_impairments(self.links)
            if self.router_template is not None and self.router is not None:
                self.set_router_template(self.router_template)
            self.run.info = self.describe()
            self.registry.save(self.run)
        except BaseException:
            self.down()
            raise
        self.up_seconds = time.perf_counter() - started
        if self.engines and not self.keep:
            self._watchdog = threading.Thread(target=self._watch_engines, name="engine watchdog", daemon=True)
            self._watchdog.start()

    def down(self) -> None:
        """Remove every node this lab created, then its registry entry. Safe to call more than once."""
        if self.run is None or os.getpid() != self._owner_pid:
            return  # never tear down from a forked copy of the process that built the lab
        with signals_ignored():
            self._watchdog_stop.set()
            for engine in self.engines.values():
                try:
                    self.engine_stats[engine.label] = engine.stop()
                except Exception:
                    pass  # it dies with its namespace below
            self.engines.clear()
            try:
                self.netlink.close()
            except Exception:
                pass  # sockets die with their namespaces anyway; removal matters more
            self.nodes.clear()
            record = self.registry.load(self.run.run_id) or self.run
            removal = remove_run(self.registry, record)
            if removal.failed:
                raise LabError(
                    f"teardown of run {record.run_id} incomplete ({'; '.join(removal.failed)}); run `testbed cleanup`"
                )
            self.run = None

    def apply_impairments(self, per_link: dict[str, dict[str, Impairment]]) -> None:
        """Shape and impair the egress of each named sending endpoint (replaces what was there). The
        router's WAN and LAN ends belong to its template, which builds the link settings in."""
        for link, senders in per_link.items():
            for sender, impairment in senders.items():
                if self._template_owns(sender, link):
                    continue
                node = self.nodes[sender]
                kernel_part = self._engine_for(sender, link, impairment)
                impair.apply(self.netlink(node.netns_path), node.netns_path, link, kernel_part)

    # ------------------------------------------------------------ impairment engines

    def uses_engine(self, impairment: Impairment) -> bool:
        """Whether the userspace engine (rather than kernel netem) does this direction's netem part."""
        if not impairment.needs_netem():
            return False
        if impairment.trace:
            if self.engine_choice == "netem":
                raise InputError(
                    "a link 'trace' is replayed by the userspace engine only; use impairment_engine auto or userspace"
                )
            return True
        if self.engine_choice == "auto":
            if self.kernel_netem is None:
                first = next(iter(self.nodes.values()))
                self.kernel_netem = impair.netem_works(first.netns_path)
            return not self.kernel_netem
        return self.engine_choice == "userspace"

    def _engine_for(self, node_name: str, link: str, impairment: Impairment) -> Impairment:
        """(Re)start or stop the engine of one link end; return what the kernel's qdiscs must still do."""
        old = self.engines.pop((node_name, link), None)
        if old is not None:
            self.engine_stats[old.label] = old.stop()
        if not self.uses_engine(impairment):
            return impairment
        queue_num = self._queue_numbers.get(node_name, 0)
        self._queue_numbers[node_name] = queue_num + 1
        engine = EngineProcess(self.nodes[node_name], link, impairment, queue_num)
        engine.start()
        self.engines[(node_name, link)] = engine
        return impairment.shaping_only()

    def _engine_check(self) -> str | None:
        for engine in list(self.engines.values()):
            failure = engine.check()
            if failure:
                return failure
        return None

    def check_engines(self) -> None:
        """Raise EngineFailed if an engine died: call it before trusting any measurement."""
        failure = self.engine_failure or self._engine_check()
        if failure:
            self.engine_failure = failure
            raise EngineFailed(failure)

    def _watch_engines(self) -> None:
        while not self._watchdog_stop.wait(0.2):
            failure = self._engine_check()
            if failure:
                self.engine_failure = failure
                if self._main_thread is not None:
                    signal.pthread_kill(self._main_thread, ENGINE_FAILED_SIGNAL)
                return

    def set_link(self, link: str, impairments: dict[str, Impairment]) -> None:
        """Change a link's settings while the lab runs (the timeline's set_link), per sending endpoint."""
        if link not in self.plan.segments:
            raise InputError(f"no link {link!r} in this lab")
        for sender, impairment in impairments.items():
            self.links.setdefault(link, {})[sender] = impairment
        owned = {sender: imp for sender, imp in impairments.items() if self._template_owns(sender, link)}
        self.apply_impairments({link: {s: i for s, i in impairments.items() if s not in owned}})
        if owned and self.router_template is not None:
            self.set_router_template(self.router_template)

    def _template_owns(self, node: str, link: str) -> bool:
        return self.router is not None and node == self.router[0] and link in self.router[1].values()

    def set_router_template(self, template: RouterTemplate) -> None:
        """Install (or switch to) a router template on the router's WAN and LAN sides."""
        if self.router is None:
            raise LabError(f"scenario {self.scenario.name!r} has no router with a 'wan' or 'lan' link for a template")
        node_name, sides = self.router
        node = self.nodes[node_name]
        own = {link: self.links.get(link, {}).get(node_name) for link in sides.values()}
        kernel_parts = {}
        for link, impairment in own.items():
            if impairment is not None:
                kernel_parts[link] = self._engine_for(node_name, link, impairment)
        self.router_template = template
        self.class_names[node_name] = qos.apply_router(
            self.netlink(node.netns_path),
            qos.RouterSides(node_name, node.netns_path, dict(sides)),
            template,
            kernel_parts,
        )

    # ------------------------------------------------------------ description

    def describe(self) -> dict[str, Any]:
        """Nodes, their namespaces and addresses: what `testbed lab up` prints and `lab exec` needs."""
        router = None
        if self.router is not None and self.router_template is not None:
            router = {
                "node": self.router[0],
                "sides": self.router[1],
                "template": self.router_template.description,
                "classes": self.class_names.get(self.router[0], {}),
            }
        vpn = tunnels.plan_tunnels(self.scenario.topology, self.plan)
        return {
            "scenario": self.scenario.name,
            "backend": self.backend_name,
            "router": router,
            "tunnels": [tunnel.describe() for tunnel in vpn],
            "impairment_engine": {
                "choice": self.engine_choice,
                "kernel_netem": self.kernel_netem,
                "userspace": [engine.describe() for engine in self.engines.values()],
            },
            "nodes": {
                name: {
                    "kind": node.kind,
                    "netns": str(node.netns_path),
                    "interfaces": {
                        **{i.ifname: str(i.address) for i in self.plan.node_interfaces(name)},
                        **{t.name: str(end.address) for t in vpn for end in t.ends if end.node == name},
                    },
                }
                for name, node in self.nodes.items()
            },
        }
