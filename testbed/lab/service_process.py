"""A long-running service a lab starts in one of its nodes (coturn, the signalling service): its process,
its log, a clear error when it exits early, and its stop."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from testbed.errors import LabError
from testbed.lab.backends import Node
from testbed.proc import stop_process

STOP_TIMEOUT_S = 3.0


class ServiceProcess:
    what = "a service"  # how errors name it

    def __init__(self, node: Node, log_file: Path):
        self.node = node
        self.log_file = log_file
        self.process: subprocess.Popen[Any] | None = None
        self.ready_s: float | None = None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def raise_if_exited(self) -> None:
        code = self.exit_code()
        if code is not None:
            raise LabError(f"{self.what} in node {self.node.name} exited with code {code}: {self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, STOP_TIMEOUT_S)
            self.process = None
