"""The vendor's cloud services a lab runs for its scenario's ``edge``: the TURN server (coturn) and the
WSS signalling service, sharing one CA made for the run, started once the network is up, checked while
calls run, stopped first at teardown."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.lab import signalling, turn
from testbed.lab.backends import Node
from testbed.lab.pki import LabCA
from testbed.scenario.addressing import AddressPlan
from testbed.scenario.model import Scenario


def needed(scenario: Scenario) -> bool:
    return scenario.edge.turn is not None or scenario.edge.signalling is not None


@dataclass
class EdgeServices:
    turn: turn.TurnServer | None = None
    signalling: signalling.SignallingService | None = None

    def raise_if_exited(self) -> None:
        for service in (self.turn, self.signalling):
            if service is not None:
                service.raise_if_exited()

    def stop(self) -> None:
        for service in (self.signalling, self.turn):
            if service is not None:
                service.stop()

    def describe(self) -> dict[str, Any]:
        return {
            "turn": self.turn.describe() if self.turn is not None else None,
            "signalling": self.signalling.describe() if self.signalling is not None else None,
        }


def start(
    scenario: Scenario, nodes: dict[str, Node], plan: AddressPlan, files: Path, run_id: str, log_dir: Path | None
) -> EdgeServices:
    """Start what ``scenario.edge`` asks for; on failure stop what was started and raise."""
    services = EdgeServices()
    ca = LabCA(files, run_id)
    try:
        if scenario.edge.turn is not None:
            services.turn = turn.start_in_lab(scenario.edge.turn, nodes, plan, ca, log_dir)
        if scenario.edge.signalling is not None:
            services.signalling = signalling.start_in_lab(scenario.edge.signalling, nodes, plan, ca, log_dir or files)
    except BaseException:
        services.stop()
        raise
    return services
