"""The registry of live runs: one JSON file per run listing exactly what that run created.

A run writes each resource here *before* creating it, so even a run killed with SIGKILL in the middle
of set-up can be cleaned up by ``testbed cleanup``: it removes what is listed, never anything found by
a name pattern. The files live on /run (tmpfs), which is wiped at reboot together with the namespaces.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from testbed.proc import start_time

_ADDING = threading.Lock()

DEFAULT_ROOT = Path("/run/voip-testbed/runs")
RUN_ID = re.compile(r"^[0-9a-f]{6}$")


def default_root() -> Path:
    """``TESTBED_REGISTRY`` moves the registry (tests use a private one)."""
    return Path(os.environ.get("TESTBED_REGISTRY", str(DEFAULT_ROOT)))


@dataclass
class Resource:
    kind: str  # "netns" | "process" | "container" ...
    name: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRecord:
    run_id: str
    owner_pid: int
    owner_start: int | None
    created: float
    purpose: str
    backend: str = "netns"
    kept: bool = False
    resources: list[Resource] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def owner_alive(self) -> bool:
        return self.owner_start is not None and start_time(self.owner_pid) == self.owner_start


HISTORY = "history.log"


class Registry:
    """Reads and writes run records under ``root``; every write is atomic (write, then rename)."""

    def __init__(self, root: Path | None = None):
        self.root = root or default_root()

    def files_dir(self, run_id: str) -> Path:
        """Where a run keeps files of its own (certificates, a server's log); removed with the run."""
        return self.root / "files" / run_id

    def _path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.json"

    def new_run(self, purpose: str, backend: str = "netns", kept: bool = False) -> RunRecord:
        """Reserve a fresh, short run id (6 hex digits) owned by this process."""
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            run_id = secrets.token_hex(3)
            try:
                fd = os.open(self._path(run_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            os.close(fd)
            record = RunRecord(run_id, os.getpid(), start_time(os.getpid()), time.time(), purpose, backend, kept)
            self.save(record)
            with open(self.root / HISTORY, "a") as history:  # an audit trail that outlives the records
                history.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {run_id} {os.getpid()} {purpose}\n")
            return record

    def history(self) -> list[str]:
        """Run ids ever started with this registry, oldest first."""
        try:
            return [line.split()[1] for line in (self.root / HISTORY).read_text().splitlines() if line.strip()]
        except OSError:
            return []

    def save(self, record: RunRecord) -> None:
        temporary = self._path(record.run_id).with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(record), indent=1))
        temporary.replace(self._path(record.run_id))

    def add(self, record: RunRecord, resource: Resource) -> None:
        with _ADDING:  # a backend may create nodes on several threads (docker)
            record.resources.append(resource)
            self.save(record)

    def load(self, run_id: str) -> RunRecord | None:
        if not RUN_ID.match(run_id):
            return None
        try:
            data = json.loads(self._path(run_id).read_text())
            data["resources"] = [Resource(**r) for r in data.get("resources", [])]
            return RunRecord(**data)
        except (FileNotFoundError, json.JSONDecodeError, TypeError, KeyError, AttributeError):
            return None

    def runs(self) -> list[RunRecord]:
        if not self.root.is_dir():
            return []
        records = [self.load(path.stem) for path in sorted(self.root.glob("*.json"))]
        return [r for r in records if r is not None]

    def forget(self, run_id: str) -> None:
        self._path(run_id).unlink(missing_ok=True)
