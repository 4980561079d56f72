"""The namespace backend: each node is a named network namespace ``vtb-<run>-<node>`` that shares the
host's filesystem, so the node's processes run the host's venv."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.lab import forkserver, netns
from testbed.lab.backends.base import node_sysctls, run_in_namespace
from testbed.lab.registry import Registry, Resource, RunRecord

OUR_NAMESPACE = re.compile(r"^vtb-[0-9a-f]{6}-[a-z0-9_-]{1,20}$")


@dataclass
class NetnsNode:
    name: str
    kind: str
    namespace: str
    python: str = sys.executable  # namespaces share the host's filesystem, so the host's venv

    @property
    def netns_path(self) -> Path:
        return netns.NETNS_RUN_DIR / self.namespace

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a program in the node: forked by the run's fork server when it is one of the testbed's
        own (agents, engines: their imports are done), otherwise a fresh process."""
        server = forkserver.current()
        if server is not None and server.handles(argv, kwargs):
            return server.spawn(self.netns_path, argv, **kwargs)
        return netns.popen(self.netns_path, argv, **kwargs)

    def run(
        self, argv: Sequence[str], timeout: float = 30, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_in_namespace(self.netns_path, argv, timeout, input)


class NetnsBackend:
    name = "netns"
    creates_at_once = 1  # a namespace takes milliseconds

    def __init__(self, registry: Registry, shared_dirs: Sequence[Path] = ()):
        self.registry = registry  # shared_dirs: the host's filesystem is already shared

    @staticmethod
    def namespace_name(run_id: str, node: str) -> str:
        return f"vtb-{run_id}-{node}"

    def close(self) -> None:
        """Nothing held open: each node's operations open and close their own netlink sockets."""

    def create_node(self, run: RunRecord, name: str, kind: str) -> NetnsNode:
        namespace = self.namespace_name(run.run_id, name)
        self.registry.add(run, Resource("netns", namespace, {"node": name, "kind": kind}))
        netns.create(namespace)
        node = NetnsNode(name, kind, namespace)
        netns.write_sysctls(node.netns_path, node_sysctls(kind))
        return node

    def destroy_node(self, node: NetnsNode) -> None:
        remove_namespace(node.namespace)

    def remove_leftover(self, resource: Resource) -> bool:
        if resource.kind != "netns":
            return False
        return remove_namespace(resource.name)


def remove_namespace(namespace: str) -> bool:
    """Remove one of our namespaces and every process in it; False when it was already gone."""
    if not OUR_NAMESPACE.match(namespace):  # a tampered record must not reach other namespaces
        raise ValueError(f"{namespace!r} is not a testbed namespace name")
    # processes still inside would keep the namespace (and its veths) alive after the unmount
    netns.kill_all_in(netns.NETNS_RUN_DIR / namespace)
    return netns.remove(namespace)
