"""The lab's STUN/TURN server: coturn in a cloud-edge node, as a dialer vendor runs one beyond the
office's WAN (docs/design.md, "The office edge").

The harness starts ``turnserver`` inside the node with a generated command line (long-term credentials
made per run; UDP and TCP on 3478; TLS on 443 with a certificate of the lab's CA naming the server's
address; relay ports inside the vendors' 10000-60000; the lab's subnets allowed as peers, since coturn
refuses private peers otherwise; no CLI port; its pid file and database in the run's own directory),
waits until a real allocation over UDP and over TLS succeeds, and stops it with the lab. A coturn that
exits early fails the run with its last log lines.

``allocate`` is also how ``testbed lab edge`` tries TURN from the office: a real allocation (aioice's
TURN client) from inside a node, timed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.errors import CapabilityError, LabError
from testbed.lab import netns
from testbed.lab.backends import Node
from testbed.lab.pki import LabCA
from testbed.lab.service_process import ServiceProcess
from testbed.scenario.addressing import AddressPlan
from testbed.scenario.edge import TURN_PORTS, TurnSpec

TURNSERVER = "turnserver"
REALM = "voip-testbed"
READY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TurnEndpoint:
    """What a client needs to use the lab's TURN server."""

    node: str
    address: str
    username: str
    password: str
    ca_file: str
    tls_port: int
    spki_sha256: str  # the server certificate's key, for a browser's SPKI allow-list

    def port(self, transport: str) -> int:
        return self.tls_port if transport == "tls" else TURN_PORTS[transport]

    def url(self, transport: str) -> str:
        """The RTCIceServer URL of one transport: turn:A:3478?transport=udp|tcp, turns:A:443?transport=tcp."""
        if transport == "tls":
            return f"turns:{self.address}:{self.tls_port}?transport=tcp"
        return f"turn:{self.address}:{TURN_PORTS[transport]}?transport={transport}"

    def stun_url(self) -> str:
        return f"stun:{self.address}:{TURN_PORTS['udp']}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "address": self.address,
            "username": self.username,
            "password": self.password,
            "ca_file": self.ca_file,
            "tls_port": self.tls_port,
            "spki_sha256": self.spki_sha256,
        }


def command(
    spec: TurnSpec, endpoint: TurnEndpoint, cert: Path, key: Path, files: Path, peers: list[str], log_file: Path
) -> list[str]:
    """coturn's command line (pure; unit-tested)."""
    low, high = spec.relay_range
    return [
        TURNSERVER,
        "-n",  # no configuration file: everything is here
        f"--log-file={log_file}",
        "--simple-log",
        "--verbose",  # one line per session and allocation: what the run directory keeps
        f"--listening-ip={endpoint.address}",
        f"--relay-ip={endpoint.address}",
        f"--listening-port={TURN_PORTS['udp']}",
        f"--tls-listening-port={spec.tls_port}",
        f"--min-port={low}",
        f"--max-port={high}",
        "--lt-cred-mech",
        f"--user={endpoint.username}:{endpoint.password}",
        f"--realm={REALM}",
        "--fingerprint",
        f"--cert={cert}",
        f"--pkey={key}",
        "--no-dtls",  # TLS over TCP is what browsers fall back to; DTLS TURN nobody uses
        "--no-cli",
        "--no-multicast-peers",
        *(f"--allowed-peer-ip={peer}" for peer in peers),
        f"--pidfile={files / 'turnserver.pid'}",
        f"--userdb={files / 'turndb'}",
        "--no-software-attribute",
    ]


def peer_ranges(subnets: list[ipaddress.IPv4Network]) -> list[str]:
    """coturn's ``allowed-peer-ip`` ranges (first-last) for the lab's subnets."""
    return [f"{net.network_address}-{net.broadcast_address}" for net in subnets]


class TurnServer(ServiceProcess):
    """coturn running in one node of a lab."""

    what = "the TURN server (coturn)"

    def __init__(
        self,
        spec: TurnSpec,
        node: Node,
        address: ipaddress.IPv4Address,
        files: Path,
        ca: LabCA,
        log_dir: Path | None = None,
    ):
        super().__init__(node, (log_dir or files) / "turnserver.log")  # a run's directory keeps the log
        self.spec = spec
        self.files = files
        server = ca.server("turn", address)
        self.endpoint = TurnEndpoint(
            node=node.name,
            address=str(address),
            username="testbed",
            password=secrets.token_hex(8),
            ca_file=str(ca.ca_file),
            tls_port=spec.tls_port,
            spki_sha256=server.spki_sha256,
        )
        self.cert, self.key = server.cert, server.key

    def start(self, subnets: list[ipaddress.IPv4Network]) -> None:
        if getattr(self.node, "python", "") != "python3" and shutil.which(TURNSERVER) is None:
            raise CapabilityError("the scenario has a TURN server, but coturn is not installed: apt install coturn")
        argv = command(self.spec, self.endpoint, self.cert, self.key, self.files, peer_ranges(subnets), self.log_file)
        started = time.perf_counter()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # coturn writes its log file line by line (its stdout is block-buffered when redirected)
        self.process = self.node.popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.wait_ready()
        self.ready_s = round(time.perf_counter() - started, 3)

    def wait_ready(self) -> None:
        """Until an allocation over UDP and one over TLS succeed from the node itself (coturn opens its
        listeners one after the other)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = ""
        for transport in ("udp", "tls"):
            while True:
                self.raise_if_exited()
                result = allocate(self.node.netns_path, self.endpoint, transport, timeout=1.0)
                if result.allocated:
                    break
                last = result.detail
                if time.monotonic() > deadline:
                    raise LabError(
                        f"the TURN server (coturn) in node {self.node.name} did not allocate over {transport} "
                        f"within {READY_TIMEOUT_S:g}s ({last}); its log: {self.log_tail()}"
                    )
                time.sleep(0.05)

    def describe(self) -> dict[str, Any]:
        return {
            **self.endpoint.as_dict(),
            "urls": {t: self.endpoint.url(t) for t in ("udp", "tcp", "tls")},
            "relay_ports": self.spec.relay_ports,
            "ready_s": self.ready_s,
            "log": str(self.log_file),
        }


# ------------------------------------------------------------ a real allocation, timed


@dataclass(frozen=True)
class Allocation:
    transport: str
    allocated: bool
    seconds: float | None
    relayed: str | None = None
    mapped: str | None = None
    detail: str = ""


def allocate(namespace: Path, endpoint: TurnEndpoint, transport: str, timeout: float = 5.0) -> Allocation:
    """Allocate a relay on ``endpoint`` over ``transport`` (udp, tcp, tls) from inside ``namespace``;
    the allocation is released again. ``seconds`` counts from the first packet (or TCP SYN) to the
    allocation's success response, TLS handshake included."""
    return netns.run_in(namespace, lambda: asyncio.run(_allocate(endpoint, transport, timeout)))


async def _allocate(endpoint: TurnEndpoint, transport: str, timeout: float) -> Allocation:
    from aioice import turn  # noqa: PLC0415 - a lab without TURN never imports it

    context: ssl.SSLContext | None = None
    if transport == "tls":
        context = ssl.create_default_context(cafile=endpoint.ca_file)
    started = time.perf_counter()
    try:
        relay, _ = await asyncio.wait_for(
            turn.create_turn_endpoint(
                asyncio.DatagramProtocol,
                server_addr=(endpoint.address, endpoint.port(transport)),
                username=endpoint.username,
                password=endpoint.password,
                ssl=context,
                transport="udp" if transport == "udp" else "tcp",
            ),
            timeout,
        )
    except TimeoutError:
        return Allocation(transport, False, None, detail=f"no answer within {timeout:g}s")
    except (OSError, ConnectionError, ssl.SSLError) as exc:
        return Allocation(transport, False, None, detail=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # aioice raises TransactionFailed/TransactionTimeout (STUN errors)
        return Allocation(transport, False, None, detail=f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - started
    relayed, mapped = relay.get_extra_info("sockname"), relay.get_extra_info("related_address")
    relay.close()  # a refresh with lifetime 0 deletes the allocation; its answer needs one round trip
    await asyncio.sleep(0.05)
    return Allocation(
        transport,
        True,
        round(seconds, 4),
        relayed=f"{relayed[0]}:{relayed[1]}" if relayed else None,
        mapped=f"{mapped[0]}:{mapped[1]}" if mapped else None,
    )


def start_in_lab(
    spec: TurnSpec, nodes: dict[str, Node], plan: AddressPlan, ca: LabCA, log_dir: Path | None = None
) -> TurnServer:
    """Start coturn in ``spec.node`` on its first address, the lab's subnets as allowed peers; its log
    goes to ``log_dir`` (a run's variant directory) or the run's own files."""
    interfaces = plan.node_interfaces(spec.node)
    if not interfaces:
        raise LabError(f"the TURN server's node {spec.node!r} has no address")
    server = TurnServer(spec, nodes[spec.node], interfaces[0].address.ip, ca.directory, ca, log_dir)
    server.start([segment.subnet for segment in plan.segments.values()])
    return server
