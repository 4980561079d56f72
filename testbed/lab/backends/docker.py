"""The Docker backend: each node is a container from the node image, with no network of its own.

Containers run with ``network_mode=none``, only the NET_ADMIN capability (never privileged), an init
process, the node's sysctls set at creation, and the run id as a label. The lab wires veths from the
host into each container's network namespace (``/proc/<pid>/ns/net``), exactly as it does for
namespaces, and configures it with the host's tools there (``Node.run``); the project's processes of the
node (agents, engines, taps) run inside the container via ``docker exec``. Directories the harness
reads back (records, taps) are bind-mounted at the same path.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.errors import CapabilityError, LabError
from testbed.lab.backends.base import node_sysctls, run_in_namespace
from testbed.lab.registry import Registry, Resource, RunRecord

NODE_IMAGE = "voip-testbed-node:latest"
# Chromium's renderers share memory through /dev/shm, which Docker makes 64 MB: too small for a tab
# (unless Chromium runs with --disable-dev-shm-usage, a playwright default, and then uses /tmp)
NODE_SHM_SIZE = "512m"
RUN_LABEL = "org.voip-testbed.run"
NODE_LABEL = "org.voip-testbed.node"
OUR_CONTAINER = re.compile(r"^vtb-[0-9a-f]{6}-[a-z0-9_-]{1,20}$")
HOW_TO_GET_DOCKER = (
    "install and start one: sudo containers/provision-docker.sh (Debian's docker.io), or systemctl start docker"
)


def client(timeout: float = 60) -> Any:
    """A Docker client that answered a ping, or CapabilityError saying how to get an engine."""
    try:
        import docker
    except ImportError:
        raise CapabilityError("the docker Python package is missing: pip install 'docker>=7'") from None
    try:
        engine = docker.from_env(timeout=timeout)
        engine.ping()
        return engine
    except Exception as exc:  # DockerException, requests' errors, PermissionError: all mean no usable engine
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        if "Permission denied" in reason:
            raise CapabilityError(
                f"no access to the Docker engine ({reason}): run as root (sudo) or join the docker group"
            ) from None
        raise CapabilityError(f"no Docker engine answers ({reason}): {HOW_TO_GET_DOCKER}") from None


@dataclass
class DockerNode:
    name: str
    kind: str
    container: str
    pid: int
    python: str = "python3"  # the project is installed in the image

    @property
    def netns_path(self) -> Path:
        return Path(f"/proc/{self.pid}/ns/net")

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        kwargs.pop("cwd", None)  # the host's working directory means nothing inside the container
        interactive = ["-i"] if kwargs.get("stdin") is not None else []
        return subprocess.Popen(["docker", "exec", *interactive, self.container, *argv], **kwargs)

    def run(
        self, argv: Sequence[str], timeout: float = 30, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_in_namespace(self.netns_path, argv, timeout, input)


class DockerBackend:
    name = "docker"
    creates_at_once = 8  # each container's start is mostly the engine's waiting: side by side, not in turn

    def __init__(self, registry: Registry, shared_dirs: Sequence[Path] = (), image: str = NODE_IMAGE):
        self.registry = registry
        self.shared_dirs = [Path(d).resolve() for d in shared_dirs]
        self.image = image
        self._client: Any = None
        self._client_lock = threading.Lock()

    @property
    def engine(self) -> Any:
        with self._client_lock:  # nodes are created on several threads: one client, pinged once
            if self._client is None:
                self._client = client()
            return self._client

    def close(self) -> None:
        """Close the engine client's connection pool now, not whenever the garbage collector gets to it: a
        harness running run after run held 11 idle sockets to the engine at times (bench/soak.py)."""
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    @staticmethod
    def container_name(run_id: str, node: str) -> str:
        return f"vtb-{run_id}-{node}".replace("_", "-")

    def create_node(self, run: RunRecord, name: str, kind: str) -> DockerNode:
        import docker

        engine = self.engine
        container_name = self.container_name(run.run_id, name)
        self.registry.add(run, Resource("container", container_name, {"node": name, "kind": kind}))
        for directory in self.shared_dirs:
            directory.mkdir(parents=True, exist_ok=True)
        try:
            container = engine.containers.run(
                self.image,
                ["sleep", "infinity"],
                name=container_name,
                detach=True,
                network_mode="none",
                cap_add=["NET_ADMIN"],
                init=True,
                shm_size=NODE_SHM_SIZE,
                sysctls=node_sysctls(kind),
                hostname=name.replace("_", "-"),
                labels={RUN_LABEL: run.run_id, NODE_LABEL: name},
                volumes={str(d): {"bind": str(d), "mode": "rw"} for d in self.shared_dirs},
            )
        except docker.errors.ImageNotFound:
            raise CapabilityError(f"no image {self.image}: build it with `testbed images build`") from None
        except docker.errors.APIError as exc:
            raise LabError(f"creating container {container_name} failed: {exc.explanation or exc}") from None
        container.reload()
        pid = container.attrs["State"]["Pid"]
        if not pid:
            raise LabError(f"container {container_name} did not start: {container.attrs['State']}")
        return DockerNode(name, kind, container_name, pid)

    def destroy_node(self, node: DockerNode) -> None:
        self._remove(node.container)

    def remove_leftover(self, resource: Resource) -> bool:
        if resource.kind != "container":
            return False
        return self._remove(resource.name)

    def _remove(self, name: str) -> bool:
        import docker

        if not OUR_CONTAINER.match(name):  # a tampered record must not reach other containers
            raise ValueError(f"{name!r} is not a testbed container name")
        try:
            container = self.engine.containers.get(name)
        except docker.errors.NotFound:
            return False
        if RUN_LABEL not in container.labels:
            raise ValueError(f"container {name} has no {RUN_LABEL} label; not removing it")
        container.remove(force=True)
        return True
