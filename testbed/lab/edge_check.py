"""The flows cloud dialer vendors require of an office edge, tried for real from a client through the
router to the far side (``testbed lab edge``): UDP media into 10000-60000, TCP 443, TCP and UDP 3478.

Each flow is allowed when a datagram arrives or a TCP connection completes within the timeout; its
connect time is graded as the vendors' network tests grade TURN connect time (< 2 s good, 2-4 s
mediocre, > 4 s bad). With the lab's TURN server (the scenario's ``edge.turn``) real allocations over
UDP, TCP and TLS join the list, and the verdict says whether calls need TURN.
"""

from __future__ import annotations

import errno
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed.lab import netns
from testbed.lab.reach import udp_probe
from testbed.lab.turn import allocate

if TYPE_CHECKING:
    from testbed.lab.lab import Lab

TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Flow:
    name: str
    protocol: str  # udp | tcp
    ports: tuple[int, ...]  # every one must pass (a range is tried at its ends and middle)
    required: bool = True


# What the vendors tell customers to open, outbound.
VENDOR_FLOWS = (
    Flow("media", "udp", (10000, 35000, 60000)),
    Flow("https", "tcp", (443,)),
    Flow("stun-turn-tcp", "tcp", (3478,)),
    Flow("stun-turn-udp", "udp", (3478,)),
)


@dataclass
class FlowResult:
    flow: str
    protocol: str
    ports: str
    required: bool
    allowed: bool
    connect_ms: float | None
    grade: str  # good | mediocre | bad | blocked
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def grade(seconds: float | None) -> str:
    """The vendors' grading of a connect time."""
    if seconds is None:
        return "blocked"
    return "good" if seconds < 2 else "mediocre" if seconds <= 4 else "bad"


def tcp_connect(source_ns: Path, destination_ns: Path, address: str, port: int, timeout: float) -> float | None:
    """Seconds to complete a TCP connection from ``source_ns`` to a listener on ``address:port`` in
    ``destination_ns`` (the lab's own service where one listens there already, e.g. the signalling
    service on 443); None when it did not complete (dropped, refused or timed out)."""

    def listener() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return sock  # a lab service listens there: connect to it
        sock.listen(1)
        return sock

    def connector() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        return sock

    server = netns.run_in(destination_ns, listener)
    client = netns.run_in(source_ns, connector)
    with server, client:
        started = time.monotonic()
        try:
            client.connect((address, port))
        except OSError:
            return None
        return time.monotonic() - started


def check_flow(lab: Lab, flow: Flow, source: str, destination: str, timeout: float = TIMEOUT_S) -> FlowResult:
    source_ns, destination_ns = lab.node(source).netns_path, lab.node(destination).netns_path
    address = str(lab.plan.address(destination))
    times: list[float] = []
    blocked: list[int] = []
    for port in flow.ports:
        if flow.protocol == "tcp":
            seconds = tcp_connect(source_ns, destination_ns, address, port, timeout)
        else:
            started = time.monotonic()
            probe = udp_probe(source_ns, destination_ns, address, timeout=timeout / 3, port=port)
            seconds = time.monotonic() - started if probe.received else None
        if seconds is None:
            blocked.append(port)
        else:
            times.append(seconds)
    allowed = not blocked
    worst = max(times) if allowed and times else None
    ports = f"{flow.ports[0]}-{flow.ports[-1]}" if len(flow.ports) > 1 else str(flow.ports[0])
    return FlowResult(
        flow=flow.name,
        protocol=flow.protocol,
        ports=ports,
        required=flow.required,
        allowed=allowed,
        connect_ms=None if worst is None else round(worst * 1000, 1),
        grade=grade(worst),
        detail=f"no answer on port {', '.join(map(str, blocked))}" if blocked else "",
    )


TURN_FLOWS = (Flow("turn-udp", "udp", (3478,)), Flow("turn-tcp", "tcp", (3478,)), Flow("turn-tls", "tcp", (443,)))


def check_turn(lab: Lab, flow: Flow, source: str, timeout: float = TIMEOUT_S) -> FlowResult:
    """A real TURN allocation on the lab's TURN server from ``source``, timed (TLS handshake included)."""
    assert lab.turn is not None
    transport = flow.name.removeprefix("turn-")
    allocation = allocate(lab.node(source).netns_path, lab.turn.endpoint, transport, timeout=timeout)
    port = lab.turn.endpoint.port(transport)
    return FlowResult(
        flow=flow.name,
        protocol="tcp" if transport == "tls" else transport,
        ports=str(port),
        required=flow.required,
        allowed=allocation.allocated,
        connect_ms=None if allocation.seconds is None else round(allocation.seconds * 1000, 1),
        grade=grade(allocation.seconds),
        detail=f"relay {allocation.relayed}" if allocation.allocated else allocation.detail,
    )


def check_edge(lab: Lab, source: str = "client", destination: str = "gateway") -> list[FlowResult]:
    """Every vendor flow from ``source`` to ``destination``, in order; then TURN allocations over UDP,
    TCP and TLS on the lab's TURN server, when it has one."""
    for node in (source, destination):
        if node not in lab.nodes:
            raise KeyError(f"no node {node!r} in the lab (nodes: {', '.join(lab.nodes)})")
    results = [check_flow(lab, flow, source, destination) for flow in VENDOR_FLOWS]
    if lab.turn is not None:
        results += [check_turn(lab, flow, source) for flow in TURN_FLOWS]
    return results


def media_path(results: list[FlowResult]) -> str:
    """What the flows mean for a WebRTC call, as the vendors' tests say it ("TURN required")."""
    allowed = {r.flow for r in results if r.allowed}
    if "media" in allowed:
        return "direct: UDP media passes"
    relays = [r.flow.removeprefix("turn-") for r in results if r.flow.startswith("turn-") and r.allowed]
    if relays:
        return f"TURN required: UDP media is blocked; calls relay over {relays[0].upper()} (of {', '.join(relays)})"
    return "no path: UDP media is blocked and no TURN allocation succeeded"
