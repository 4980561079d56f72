"""Probe streams: what a link or a router does to a paced UDP stream, packet by packet.

A sender process in one node sends numbered datagrams at a fixed rate, each carrying its send time; a
receiver process in another node records the kernel's arrival timestamp and the DSCP it saw. Nodes
share the host clock, so one-way delay is exact up to the sender's own scheduling. Separate processes
keep one GIL each, so the sender's pacing never delays the receiver. Used by the fidelity tests and
benchmarks (kernel netem, the userspace engine, router QoS).

``python -m testbed.lab.measure receive PORT OUT.npz IDLE`` / ``... send ADDR PORT PPS COUNT SIZE DSCP [SPORT]``.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from testbed.errors import ExitCode
from testbed.proc import stop_process
from testbed.sockopts import big_buffer, mark_dscp, receive_timestamps, receive_tos, timestamp_ns, tos_of

HEADER = struct.Struct("!IQ")  # sequence number, send time (ns, CLOCK_REALTIME)
WARMUP_SEQUENCE = 0xFFFFFFFF
WARMUP_SECONDS = 0.5


class RunsProcesses(Protocol):
    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]: ...


@dataclass(frozen=True)
class ProbeStream:
    """Per sequence number: send time, first arrival time (-1 = lost), DSCP seen (-1 = lost)."""

    send_ns: np.ndarray
    recv_ns: np.ndarray
    dscp: np.ndarray
    arrival_order: np.ndarray
    duplicates: int

    @property
    def count(self) -> int:
        return len(self.send_ns)

    @property
    def received(self) -> np.ndarray:
        return self.recv_ns >= 0

    @property
    def loss_rate(self) -> float:
        return float(1 - self.received.mean()) if self.count else 0.0

    @property
    def delays_ms(self) -> np.ndarray:
        """One-way delay of every received packet, in sequence order."""
        mask = self.received
        delays: np.ndarray = (self.recv_ns[mask] - self.send_ns[mask]) / 1e6
        return delays

    def loss_bursts(self) -> np.ndarray:
        """Lengths of the runs of consecutive lost packets."""
        lost = np.concatenate(([0], (~self.received).astype(np.int8), [0]))
        edges = np.flatnonzero(np.diff(lost))
        return edges[1::2] - edges[0::2]

    @property
    def reordered(self) -> int:
        """Packets that arrived after a packet with a higher sequence number."""
        order = self.arrival_order
        if len(order) == 0:
            return 0
        return int(np.sum(order < np.maximum.accumulate(order)))


def probe_stream(
    sender: RunsProcesses,
    receiver: RunsProcesses,
    address: str,
    workdir: Path,
    *,
    pps: float = 1000,
    count: int = 5000,
    size: int = 200,
    dscp: int = 0,
    port: int = 5002,
    idle: float = 2.0,
    source_port: int = 0,
    warmup: bool = False,
) -> ProbeStream:
    """Send ``count`` datagrams of ``size`` bytes at ``pps`` from sender to ``address`` and measure them.

    ``warmup``: first send 3 datagrams the receiver ignores and wait 0.5 s, so every hop has resolved
    its neighbour (they do count in tc counters and engine statistics)."""
    out = workdir / f"probe-{port}-{time.monotonic_ns()}.npz"
    receiving = receiver.popen(
        [
            getattr(receiver, "python", sys.executable),
            "-m",
            "testbed.lab.measure",
            "receive",
            str(port),
            str(out),
            str(idle),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if receiving.stdout is None or receiving.stdout.readline().strip() != "ready":
            raise RuntimeError("probe receiver did not start")
        sending = sender.popen(
            [
                getattr(sender, "python", sys.executable),
                "-m",
                "testbed.lab.measure",
                "send",
                address,
                str(port),
                str(pps),
                str(count),
                str(size),
                str(dscp),
                str(source_port),
                str(int(warmup)),
            ]
        )
        sending.wait(timeout=count / pps * 3 + 60)
        receiving.wait(timeout=idle + 60)
    finally:
        for process in (receiving, locals().get("sending")):
            if process is not None:
                stop_process(process, 0, terminate=False)  # still running here: a failed test
    return load(out, count)


def load(path: Path, count: int) -> ProbeStream:
    data = np.load(path)
    seq, sent, arrived, tos = data["seq"], data["send_ns"], data["recv_ns"], data["tos"]
    valid = seq < count
    seq, sent, arrived, tos = seq[valid], sent[valid], arrived[valid], tos[valid]
    send_ns = np.full(count, -1, dtype=np.int64)
    recv_ns = np.full(count, -1, dtype=np.int64)
    dscp = np.full(count, -1, dtype=np.int16)
    _, first = np.unique(seq, return_index=True)
    send_ns[seq[first]] = sent[first]
    recv_ns[seq[first]] = arrived[first]
    dscp[seq[first]] = tos[first] >> 2
    missing = send_ns < 0
    if missing.any():  # lost packets: their send time follows from the schedule of the received ones
        known = np.flatnonzero(~missing)
        if len(known):
            send_ns[missing] = np.interp(np.flatnonzero(missing), known, send_ns[known]).astype(np.int64)
    path.unlink(missing_ok=True)
    return ProbeStream(send_ns, recv_ns, dscp, seq, int(len(seq) - len(first)))


# ---------------------------------------------------------------- the two processes


def send(
    address: str, port: int, pps: float, count: int, size: int, dscp: int, source_port: int = 0, warmup: bool = False
) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", source_port))
    mark_dscp(sock, dscp)
    padding = b"\0" * max(0, size - HEADER.size)
    # warm-up datagrams (sequence numbers the receiver drops) let every hop resolve its neighbour first:
    # otherwise the stream's first packets wait for ARP, or are dropped when the kernel's queue of
    # unresolved packets overflows, which is the lab's start-up and not the link being measured
    for _ in range(3 if warmup else 0):
        sock.sendto(HEADER.pack(WARMUP_SEQUENCE, time.time_ns()) + padding, (address, port))
    if warmup:
        time.sleep(WARMUP_SECONDS)
    gap = 1.0 / pps
    due = time.perf_counter()
    for sequence in range(count):
        while time.perf_counter() < due:
            pass
        try:
            sock.sendto(HEADER.pack(sequence, time.time_ns()) + padding, (address, port))
        except OSError:
            pass  # a full local queue is loss, as the receiver will see
        due += gap


def receive(port: int, out: str, idle: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # forced past net.core.rmem_max: a receiver that stalls (a loaded host, or a VM under emulation) must
    # not turn its own socket's overflow into network loss
    big_buffer(sock, socket.SO_RCVBUF, 16 << 20)
    receive_timestamps(sock)
    receive_tos(sock)
    sock.bind(("0.0.0.0", port))
    print("ready", flush=True)
    rows: list[tuple[int, int, int, int]] = []
    sock.settimeout(30.0)  # the first packet may take a while (ARP, slow senders)
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(65535, 256)
        except TimeoutError:
            break
        sock.settimeout(idle)
        arrived, tos = time.time_ns(), -4
        for level, kind, value in ancillary:
            stamp, seen = timestamp_ns(level, kind, value), tos_of(level, kind, value)
            if stamp is not None:
                arrived = stamp
            elif seen is not None:
                tos = seen
        if len(data) >= HEADER.size:
            sequence, sent = HEADER.unpack_from(data)
            rows.append((sequence, sent, arrived, tos))
    table = np.array(rows, dtype=np.int64).reshape(-1, 4)
    np.savez(out, seq=table[:, 0], send_ns=table[:, 1], recv_ns=table[:, 2], tos=table[:, 3])


def main(argv: list[str]) -> ExitCode:
    if argv[1] == "send":
        send(
            argv[2],
            int(argv[3]),
            float(argv[4]),
            int(argv[5]),
            int(argv[6]),
            int(argv[7]),
            int(argv[8]) if len(argv) > 8 else 0,
            len(argv) > 9 and argv[9] == "1",
        )
    else:
        receive(int(argv[2]), argv[3], float(argv[4]))
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main(sys.argv))
