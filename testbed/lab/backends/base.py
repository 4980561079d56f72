"""What every backend provides: nodes with a network namespace, a way to start the project's processes
in them (``popen``) and a way to run the host's network tools in them (``run``).

``run`` is the one path for ``ip``, ``tc``, ``iptables``, ``nft`` and ``sysctl``: on every backend it is
the host's binary executed inside the node's network namespace (setns between fork and exec). A
container's own tools are never used to configure its network, so every rule of a lab is written by
the same iptables (see ``testbed.lab.iptables``) and every qdisc by the same tc.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from testbed.lab import iptables, netns
from testbed.lab.registry import Resource, RunRecord
from testbed.proc import stop_process

MEDIA_PORT_RANGE = "10000 60000"  # what WebRTC dialers use for media (docs/design.md, "Node settings")


def node_sysctls(kind: str) -> dict[str, str]:
    """Sysctls every node gets at creation. IPv6 is off (the lab is IPv4) so no RS/MLD noise is counted."""
    return {
        "net.ipv4.ip_local_port_range": MEDIA_PORT_RANGE,
        "net.ipv6.conf.all.disable_ipv6": "1",
        "net.ipv6.conf.default.disable_ipv6": "1",
        "net.ipv4.ip_forward": "1" if kind == "router" else "0",
    }


class Node(Protocol):
    name: str
    kind: str  # host | router | switch
    python: str  # the Python that runs the project's processes inside the node

    @property
    def netns_path(self) -> Path:
        """A path to the node's network namespace, usable with setns and pyroute2's ``netns=``."""
        ...

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start one of the project's processes in the node (its filesystem, its Python)."""
        ...

    def run(
        self, argv: Sequence[str], timeout: float = 30, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a host network tool (ip, tc, iptables, nft, sysctl) in the node's namespace; text output."""
        ...


class Backend(Protocol):
    name: str
    creates_at_once: int  # nodes it creates side by side (a container takes a few hundred ms; a namespace ms)

    def create_node(self, run: RunRecord, name: str, kind: str) -> Node: ...

    def destroy_node(self, node: Any) -> None: ...

    def remove_leftover(self, resource: Resource) -> bool:
        """Remove one registry resource of a dead run; True if something was removed."""
        ...

    def close(self) -> None:
        """Let go of what the backend holds open (an engine's connections); nodes it made stay as they are."""
        ...


def create_nodes(backend: Backend, run: RunRecord, wanted: Sequence[tuple[str, str]]) -> dict[str, Node]:
    """Create the (name, kind) nodes, ``backend.creates_at_once`` at a time. Each is recorded in the
    registry before it exists, so when one fails the lab's teardown removes every other one, finished
    or not; the first failure is raised once all have ended."""
    if backend.creates_at_once <= 1 or len(wanted) <= 1:
        return {name: backend.create_node(run, name, kind) for name, kind in wanted}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=backend.creates_at_once, thread_name_prefix="create-node") as pool:
        futures = {name: pool.submit(backend.create_node, run, name, kind) for name, kind in wanted}
    return {name: future.result() for name, future in futures.items()}


def run_in_namespace(
    path: Path, argv: Sequence[str], timeout: float = 30, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``Node.run`` for every backend: the host's tool inside the namespace at ``path``, run to completion.

    ``iptables``, ``iptables-save`` and ``iptables-restore`` become the pinned variant.
    """
    command = iptables.pinned(argv)
    process = netns.popen(
        path,
        command,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(input, timeout=timeout)
    except BaseException:
        stop_process(process, 0, terminate=False)  # straight to SIGKILL: a configuration tool hung
        raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)
