"""``Lab``: bring a scenario's network up and always take it down again.

Teardown runs on success, on any exception (also one in the middle of set-up), on Ctrl-C and on
SIGTERM/SIGHUP; a second signal during teardown is ignored so teardown completes. What cannot be
cleaned up in-process (SIGKILL) is left listed in the registry for ``testbed cleanup``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from testbed.errors import CapabilityError, InputError, LabError
from testbed.lab import edge, impair, links, qos, services, tunnels
from testbed.lab.backends import Backend, Node, make_backend
from testbed.lab.backends.base import create_nodes
from testbed.lab.cleanup import remove_run
from testbed.lab.engine.harness import EngineProcess
from testbed.lab.engine_set import ENGINE_FAILED_SIGNAL, EngineFailed, EngineSet
from testbed.lab.registry import Registry, Resource, RunRecord
from testbed.lab.signals import signals_ignored, signals_raise
from testbed.lab.turn import TurnServer
from testbed.scenario.addressing import AddressPlan, plan_addresses
from testbed.scenario.model import Impairment, Scenario
from testbed.scenario.router_template import RouterTemplate

__all__ = ["ENGINE_FAILED_SIGNAL", "EngineFailed", "Lab", "scenario_template", "switch_name"]


def scenario_template(scenario: Scenario) -> RouterTemplate:
    """The router template the scenario names (``fifo`` by default) with its overrides, from the shipped
    templates: what ``load_scenario`` resolves for a scenario file without templates of its own."""
    from testbed.scenario.load import BUILTIN_SCENARIOS, find_template, load_template

    name = scenario.router.template
    path = find_template(name, BUILTIN_SCENARIOS / f"{scenario.name}.yaml")
    if path is None:
        raise InputError(f"router template {name!r} is not shipped; pass router_template= (load_template)")
    return load_template(path, scenario.router.overrides)


def switch_name(link: str) -> str:
    """The node that holds a segment's bridge; '_' cannot occur in user node names, so no clash."""
    return f"sw_{link}"


class Lab:
    """The emulated network of one scenario. Use as ``with Lab(scenario) as lab: ...``.

    ``router_template``: what the router runs; default the scenario's own (``router.template``, resolved
    among the shipped templates), so a lab built here is the one ``testbed lab up`` builds.
    """

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
        log_dir: Path | None = None,
    ):
        self.scenario = scenario
        self.shared_dirs = list(shared_dirs)  # host directories the nodes' processes write into
        self.log_dir = log_dir  # where services' logs go (the TURN server's); default the run's own files
        # the links as they are now: the timeline's set_link changes them while the lab runs
        self.links: dict[str, dict[str, Impairment]] = {link: dict(ends) for link, ends in scenario.links.items()}
        self.nodes: dict[str, Node] = {}
        self._backend: Backend | None = None  # closed at teardown (a docker engine client's connections)
        self.impairment_engines = EngineSet(impairment_engine or scenario.impairment_engine, self.nodes)
        self.router = qos.find_router(scenario)
        if router_template is None and self.router is not None:
            router_template = scenario_template(scenario)
        self.router_template = router_template
        self.class_names: dict[str, dict[str, dict[str, str]]] = {}  # node -> interface -> handle -> class
        self.registry = registry or Registry()
        self.backend_name = backend or scenario.backend
        self.keep = keep
        self.purpose = purpose
        self.plan: AddressPlan = plan_addresses(scenario.topology)
        self.run: RunRecord | None = None
        self.netlink = links.Netlink()
        self.up_seconds: float | None = None
        self.services = services.EdgeServices()  # the edge's coturn and signalling, when the scenario has them
        self._signals: list[AbstractContextManager[None]] = []
        self._owner_pid = os.getpid()

    @property
    def run_id(self) -> str:
        if self.run is None:
            raise LabError("the lab is not up")
        return self.run.run_id

    def node(self, name: str) -> Node:
        return self.nodes[name]

    # ------------------------------------------------------------ impairment engines (see EngineSet)

    @property
    def engines(self) -> dict[tuple[str, str], EngineProcess]:
        return self.impairment_engines.running

    @property
    def engine_stats(self) -> dict[str, dict[str, Any]]:
        """Final stats of the engines stopped so far, by label."""
        return self.impairment_engines.stats

    def engine_counters(self) -> dict[str, dict[str, Any]]:
        """Every engine's counters so far, running or stopped (final ones only after teardown)."""
        return self.impairment_engines.counters()

    @property
    def kernel_netem(self) -> bool | None:
        return self.impairment_engines.kernel_netem

    def uses_engine(self, impairment: Impairment) -> bool:
        return self.impairment_engines.uses_engine(impairment)

    def check_engines(self) -> None:
        """Raise EngineFailed if an engine died, LabError if the TURN server or the signalling service
        did: call it before trusting any measurement."""
        self.impairment_engines.raise_if_failed()
        self.services.raise_if_exited()

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Lab:
        self._signals = [signals_raise(), self.impairment_engines.failures_raise()]
        for handlers in self._signals:
            handlers.__enter__()
        try:
            self.up()
        except BaseException:
            self._restore_signals()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            failure = self.impairment_engines.check()
            if not self.keep or exc_info[0] is not None or failure:
                self.down()
            if failure and not isinstance(exc_info[1], EngineFailed):
                raise EngineFailed(failure)
        finally:
            self._restore_signals()

    def _restore_signals(self) -> None:
        while self._signals:
            self._signals.pop().__exit__(None, None, None)

    def up(self) -> None:
        """Create nodes, wire segments, set addresses and routes. On any failure, undo what was done."""
        if os.geteuid() != 0:
            raise CapabilityError("building a lab needs root (network namespaces); run with sudo")
        started = time.perf_counter()
        self.run = self.registry.new_run(self.purpose, self.backend_name, kept=self.keep)
        try:
            files = self._files_dir() if services.needed(self.scenario) else None
            backend = make_backend(self.backend_name, self.registry, [*self.shared_dirs, *([files] if files else [])])
            self._backend = backend
            wanted = [*self.plan.nodes.items()]
            wanted += [(switch_name(s.name), "switch") for s in self.plan.segments.values() if s.switched]
            self.nodes.update(create_nodes(backend, self.run, wanted))
            for node in self.nodes.values():
                links.bring_up_loopback(self.netlink, node)
            for segment in self.plan.segments.values():
                switch = self.nodes.get(switch_name(segment.name)) if segment.switched else None
                links.wire_segment(self.netlink, segment, self.nodes, switch)
            links.configure_addresses(self.netlink, self.plan, self.nodes)
            tunnels.wire(self.netlink, self.scenario.topology, self.plan, self.nodes)
            with self.impairment_engines.starting_together():
                self.apply_impairments(self.links)
                if self.router_template is not None and self.router is not None:
                    self.set_router_template(self.router_template)
            if files is not None:
                self.services = services.start(
                    self.scenario, self.nodes, self.plan, files, self.run.run_id, self.log_dir
                )
            self.run.info = self.describe()
            self.registry.save(self.run)
        except BaseException:
            self.down()
            raise
        self.up_seconds = time.perf_counter() - started
        if not self.keep:
            self.impairment_engines.start_watchdog()

    def down(self) -> None:
        """Remove every node this lab created, then its registry entry. Safe to call more than once."""
        if self.run is None or os.getpid() != self._owner_pid:
            return  # never tear down from a forked copy of the process that built the lab
        with signals_ignored():
            self.services.stop()
            self.impairment_engines.stop_all()
            try:
                self.netlink.close()
            except Exception:
                pass  # sockets die with their namespaces anyway; removal matters more
            self.nodes.clear()
            record = self.registry.load(self.run.run_id) or self.run
            backend, self._backend = self._backend, None
            removal = remove_run(self.registry, record, backend)  # closes the backend when done
            if removal.failed:
                raise LabError(
                    f"teardown of run {record.run_id} incomplete ({'; '.join(removal.failed)}); run `testbed cleanup`"
                )
            self.run = None

    @property
    def turn(self) -> TurnServer | None:
        return self.services.turn

    def _files_dir(self) -> Path:
        """A directory of this run's own (the TURN server's certificates, keys, log), listed in the
        registry before it exists, so `testbed cleanup` removes it after a crash."""
        assert self.run is not None
        path = self.registry.files_dir(self.run.run_id)
        self.registry.add(self.run, Resource("files", str(path)))
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------ links and the router

    def apply_impairments(self, per_link: dict[str, dict[str, Impairment]]) -> None:
        """Shape and impair the egress of each named sending endpoint (replaces what was there). The
        router's WAN and LAN ends belong to its template, which builds the link settings in."""
        for link, senders in per_link.items():
            for sender, impairment in senders.items():
                if self._template_owns(sender, link):
                    continue
                node = self.nodes[sender]
                kernel_part = self.impairment_engines.assign(sender, link, impairment)
                impair.apply(self.netlink(node.netns_path), node, link, kernel_part)

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
        return (
            self.router is not None
            and self.router_template is not None
            and node == self.router[0]
            and link in self.router[1].values()
        )

    def flush_conntrack(self, node: str | None = None) -> int:
        """Forget ``node``'s tracked connections and NAT mappings (default: the router's); how many."""
        name = node or (self.router[0] if self.router else None)
        if name is None or name not in self.nodes:
            raise LabError(f"flush_conntrack: no node {name!r} in this lab (say which with node:)")
        return edge.flush_conntrack(self.nodes[name].netns_path)

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
                kernel_parts[link] = self.impairment_engines.assign(node_name, link, impairment)
        self.router_template = template
        self.class_names[node_name] = qos.apply_router(
            self.netlink(node.netns_path),
            qos.RouterSides(node, dict(sides), self.scenario.edge.media_prefix),
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
            "impairment_engine": self.impairment_engines.describe(),
            **self.services.describe(),
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
