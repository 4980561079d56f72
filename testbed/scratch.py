"""Scratch directories owned by one process: what a browser writes during a call (profile, HOME, TMPDIR).

Each directory is named after its owner (pid and the kernel's start time of that pid), so
``testbed cleanup`` can remove exactly the directories whose owner is gone (an agent killed with
SIGKILL), and never one that a live run still uses. The root is on /run (tmpfs, wiped at reboot), next
to the registry of runs; ``TESTBED_SCRATCH`` moves it (tests use a private one). Standard library only:
agents import it at start.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from testbed.proc import start_time

DEFAULT_ROOT = Path("/run/voip-testbed/scratch")


def root() -> Path:
    return Path(os.environ.get("TESTBED_SCRATCH", str(DEFAULT_ROOT)))


def owner_prefix(pid: int | None = None) -> str:
    """``PID-STARTTIME-``: the prefix of every scratch directory ``pid`` owns."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}-{start_time(pid)}-"


def make(label: str) -> Path:
    """A new directory for this process; ``label`` (a few letters) says what it holds. Paths stay short:
    a browser puts a Unix socket (at most 107 bytes of path) in the TMPDIR it is given here."""
    base = root()
    base.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() else "_" for c in label)[:6]
    return Path(tempfile.mkdtemp(prefix=f"{owner_prefix()}{safe}-", dir=base))


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def orphans() -> list[Path]:
    """Scratch directories whose owner process is gone."""
    base = root()
    if not base.is_dir():
        return []
    found = []
    for entry in base.iterdir():
        pid, _, rest = entry.name.partition("-")
        start, _, _ = rest.partition("-")
        if not pid.isdigit() or str(start_time(int(pid))) != start:
            found.append(entry)
    return found


def remove_orphans() -> list[Path]:
    """Remove what crashed processes left; returns what was removed."""
    removed = []
    for path in orphans():
        remove(path)
        if not path.exists():
            removed.append(path)
    return removed
