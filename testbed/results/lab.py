"""``lab.json``: the network a variant ran on (backend, nodes, addresses, router, impairment engines)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from testbed.results.base import Record, ResultFile

LAB_FILE = "lab.json"


class NodeDescription(Record):
    kind: str
    netns: str
    interfaces: dict[str, str] = Field(description="interface -> address")


class RouterDescription(Record):
    node: str
    sides: dict[str, str]
    template: str
    classes: dict[str, dict[str, str]]


class EngineDescription(Record):
    choice: str
    kernel_netem: bool | None
    userspace: list[dict[str, Any]] = Field(default_factory=list)
    stats: dict[str, dict[str, Any]] = Field(default_factory=dict, description="final counters, after teardown")


class TurnDescription(Record):
    """The lab's TURN server (coturn): where it listens, its per-run credentials and CA, its log."""

    node: str
    address: str
    username: str
    password: str = Field(description="made per run; the server lives only as long as the lab")
    ca_file: str
    tls_port: int
    spki_sha256: str
    urls: dict[str, str]
    relay_ports: str
    ready_s: float | None = None
    log: str


class SignallingDescription(Record):
    """The lab's WSS signalling service: offers and answers cross the lab through it."""

    node: str
    url: str
    ca_file: str
    ready_s: float | None = None
    log: str


class LabDescription(ResultFile):
    scenario: str
    backend: str
    router: RouterDescription | None
    tunnels: list[dict[str, Any]] = Field(default_factory=list)
    impairment_engine: EngineDescription
    nodes: dict[str, NodeDescription]
    turn: TurnDescription | None = None
    signalling: SignallingDescription | None = None

    def engine_name(self) -> str:
        """Which impairment engine did the delay and loss: userspace, netem or none."""
        if self.impairment_engine.userspace:
            return "userspace"
        return "netem" if self.impairment_engine.kernel_netem else "none"
