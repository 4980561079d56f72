"""Nodes and the backends that make them. A backend is the only code that knows whether a node is a
network namespace or a container; the rest of the lab only uses a node's namespace handle and ``popen``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from testbed.lab import netns
from testbed.lab.registry import Registry, Resource, RunRecord

OUR_NAMESPACE = re.compile(r"^vtb-[0-9a-f]{6}-[a-z0-9_-]{1,20}$")
MEDIA_PORT_RANGE = "10000 60000"  # what WebRTC dialers use for media; see DESIGN.md


def node_sysctls(kind: str) -> dict[str, str]:
    """Sysctls every node gets at creation. IPv6 is off (the lab is IPv4) so no RS/MLD noise is counted."""
    values = {
        "net.ipv4.ip_local_port_range": MEDIA_PORT_RANGE,
        "net.ipv6.conf.all.disable_ipv6": "1",
        "net.ipv6.conf.default.disable_ipv6": "1",
        "net.ipv4.ip_forward": "1" if kind == "router" else "0",
    }
    return values


class Node(Protocol):
    name: str
    kind: str  # host | router | switch
    python: str  # the Python that runs the project's processes inside the node

    @property
    def netns_path(self) -> Path:
        """A path to the node's network namespace, usable with setns and pyroute2's ``netns=``."""

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen: ...


class Backend(Protocol):
    name: str

    def create_node(self, run: RunRecord, name: str, kind: str) -> Node: ...

    def destroy_node(self, node: Node) -> None: ...

    def remove_leftover(self, resource: Resource) -> bool:
        """Remove one registry resource of a dead run; True if something was removed."""


@dataclass
class NetnsNode:
    name: str
    kind: str
    namespace: str
    python: str = sys.executable  # namespaces share the host's filesystem, so the host's venv

    @property
    def netns_path(self) -> Path:
        return netns.NETNS_RUN_DIR / self.namespace

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        return netns.popen(self.netns_path, argv, **kwargs)

    def run(self, argv: Sequence[str], timeout: float = 30, **kwargs: Any) -> subprocess.CompletedProcess:
        """Run a command in the node to completion and capture its output (text)."""
        process = self.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
        try:
            out, err = process.communicate(timeout=timeout)
        except BaseException:
            process.kill()
            process.wait()
            raise
        return subprocess.CompletedProcess(list(argv), process.returncode, out, err)


class NetnsBackend:
    """Nodes are named network namespaces ``vtb-<run>-<node>`` sharing the host's filesystem."""

    name = "netns"

    def __init__(self, registry: Registry):
        self.registry = registry

    @staticmethod
    def namespace_name(run_id: str, node: str) -> str:
        return f"vtb-{run_id}-{node}"

    def create_node(self, run: RunRecord, name: str, kind: str) -> NetnsNode:
        namespace = self.namespace_name(run.run_id, name)
        self.registry.add(run, Resource("netns", namespace, {"node": name, "kind": kind}))
        netns.create(namespace)
        node = NetnsNode(name, kind, namespace)
        netns.write_sysctls(node.netns_path, node_sysctls(kind))
        return node

    def destroy_node(self, node: NetnsNode) -> None:
        self._remove_namespace(node.namespace)

    def remove_leftover(self, resource: Resource) -> bool:
        if resource.kind != "netns":
            return False
        return self._remove_namespace(resource.name)

    @staticmethod
    def _remove_namespace(namespace: str) -> bool:
        if not OUR_NAMESPACE.match(namespace):  # a tampered record must not reach other namespaces
            raise ValueError(f"{namespace!r} is not a testbed namespace name")
        # processes still inside would keep the namespace (and its veths) alive after the unmount
        netns.kill_all_in(netns.NETNS_RUN_DIR / namespace)
        return netns.remove(namespace)


def make_backend(name: str, registry: Registry, shared_dirs: Sequence[Path] = ()) -> Backend:
    """``shared_dirs``: host directories the nodes' processes write to (mounted into containers)."""
    if name == "netns":
        return NetnsBackend(registry)
    if name == "docker":
        from testbed.lab.docker_nodes import DockerBackend

        return DockerBackend(registry, shared_dirs)
    from testbed.errors import InputError

    raise InputError(f"backend {name!r}: use netns or docker")
