"""Backends make nodes: named network namespaces (``netns``) or containers (``docker``). A backend is the
only code that knows which; the rest of the lab uses a node's namespace path, ``run`` and ``popen``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from testbed.errors import InputError
from testbed.lab.backends.base import Backend, Node, node_sysctls, run_in_namespace
from testbed.lab.backends.docker import DockerBackend
from testbed.lab.backends.netns import NetnsBackend
from testbed.lab.registry import Registry

BackendFactory = Callable[[Registry, Sequence[Path]], Backend]

# a factory takes (registry, shared_dirs); the docker SDK is imported only when a container is made
BACKENDS: dict[str, BackendFactory] = {"netns": NetnsBackend, "docker": DockerBackend}


def make_backend(name: str, registry: Registry, shared_dirs: Sequence[Path] = ()) -> Backend:
    """``shared_dirs``: host directories the nodes' processes write to (mounted into containers)."""
    if name not in BACKENDS:
        raise InputError(f"backend {name!r}: use {' or '.join(BACKENDS)}")
    return BACKENDS[name](registry, shared_dirs)


__all__ = ["BACKENDS", "Backend", "Node", "make_backend", "node_sysctls", "run_in_namespace"]
