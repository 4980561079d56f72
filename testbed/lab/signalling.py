"""The lab's signalling service (``testbed.media.signalling``) from the harness's side: started in its
node with a certificate of the lab's CA naming its address, ready when it says so, stopped with the
lab; one that exits early fails the run clearly."""

from __future__ import annotations

import ipaddress
import json
import select
import subprocess
import time
from pathlib import Path
from typing import Any

from testbed.errors import LabError
from testbed.lab.backends import Node
from testbed.lab.pki import LabCA
from testbed.lab.service_process import ServiceProcess
from testbed.scenario.addressing import AddressPlan
from testbed.scenario.edge import SignallingSpec

READY_TIMEOUT_S = 15.0


class SignallingService(ServiceProcess):
    what = "the signalling service"

    def __init__(self, spec: SignallingSpec, node: Node, address: ipaddress.IPv4Address, ca: LabCA, log_dir: Path):
        super().__init__(node, log_dir / "signalling.log")
        self.spec, self.address = spec, address
        self.ca_file = str(ca.ca_file)
        self.cert = ca.server("signalling", address)

    @property
    def url(self) -> str:
        return f"wss://{self.address}:{self.spec.port}/"

    def start(self) -> None:
        argv = [self.node.python, "-m", "testbed.media.signalling", "--address", str(self.address)]
        argv += ["--port", str(self.spec.port), "--cert", str(self.cert.cert), "--key", str(self.cert.key)]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "w") as log:
            self.process = self.node.popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True
            )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], READY_TIMEOUT_S)
        line = self.process.stdout.readline() if ready else ""
        try:
            event = json.loads(line) if line else {}
        except json.JSONDecodeError:
            event = {}
        if event.get("event") != "ready":
            self.stop()
            raise LabError(
                f"the signalling service in node {self.node.name} did not start: {line.strip() or 'no answer'}; "
                f"its log: {self.log_tail()}"
            )

    def describe(self) -> dict[str, Any]:
        return {
            "node": self.node.name,
            "url": self.url,
            "ca_file": self.ca_file,
            "ready_s": self.ready_s,
            "log": str(self.log_file),
        }


def start_in_lab(
    spec: SignallingSpec, nodes: dict[str, Node], plan: AddressPlan, ca: LabCA, log_dir: Path
) -> SignallingService:
    interfaces = plan.node_interfaces(spec.node)
    if not interfaces:
        raise LabError(f"the signalling service's node {spec.node!r} has no address")
    service = SignallingService(spec, nodes[spec.node], interfaces[0].address.ip, ca, log_dir)
    started = time.perf_counter()
    service.start()
    service.ready_s = round(time.perf_counter() - started, 3)
    return service
