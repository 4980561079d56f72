"""Tear down runs from their registry records: a lab's own ``down()``, ``testbed lab down RUN`` and
``testbed cleanup`` for runs whose owner died (SIGKILL, power cut of the terminal, OOM)."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from testbed.lab.backends import Backend, make_backend
from testbed.lab.registry import Registry, Resource, RunRecord


@dataclass
class Removal:
    run_id: str
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def remove_run(registry: Registry, record: RunRecord, backend: Backend | None = None) -> Removal:
    """Remove every resource of ``record``, newest first; forget the record only if all are gone.
    ``backend``: the one that made the run's nodes (a lab's own teardown), used and closed instead of a new
    one (for docker, a second engine client and its ping)."""
    result = Removal(record.run_id)
    if backend is not None and (backend.name != record.backend or not record.resources):
        backend.close()
        backend = None
    if not record.resources:
        registry.forget(record.run_id)
        return result
    if backend is None:
        try:
            backend = make_backend(record.backend, registry)
        except Exception as exc:
            result.failed.append(f"backend {record.backend}: {exc}")
            return result

    def remove(resource: Resource) -> None:
        try:
            if resource.kind == "files":
                if _remove_files(registry, record, Path(resource.name)):
                    result.removed.append(f"files {resource.name}")
            elif backend.remove_leftover(resource):
                result.removed.append(f"{resource.kind} {resource.name}")
        except Exception as exc:  # keep going: one stuck resource must not leak the others
            result.failed.append(f"{resource.kind} {resource.name}: {exc}")

    newest_first = list(reversed(record.resources))
    nodes = [r for r in newest_first if r.kind != "files"]
    try:
        if backend.creates_at_once > 1 and len(nodes) > 1:  # containers: side by side
            with ThreadPoolExecutor(max_workers=backend.creates_at_once, thread_name_prefix="remove-node") as pool:
                list(pool.map(remove, nodes))
        else:
            for resource in nodes:
                remove(resource)
    finally:
        backend.close()
    for resource in newest_first:
        if resource.kind == "files":  # after the nodes whose processes may still write there
            remove(resource)
    if not result.failed:
        registry.forget(record.run_id)
    return result


def _remove_files(registry: Registry, record: RunRecord, path: Path) -> bool:
    """Remove a run's own directory; only the one the registry would give it (a tampered record must not
    reach other paths)."""
    if path != registry.files_dir(record.run_id):
        raise ValueError(f"{path} is not run {record.run_id}'s files directory")
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


def stale_runs(registry: Registry, include_kept: bool = False) -> list[RunRecord]:
    """Runs whose owner process is gone (kept labs only with ``include_kept``)."""
    return [r for r in registry.runs() if not r.owner_alive() and (include_kept or not r.kept)]


def cleanup(registry: Registry, include_kept: bool = False) -> list[Removal]:
    return [remove_run(registry, record) for record in stale_runs(registry, include_kept)]
