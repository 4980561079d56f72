"""The tap process: capture RTP on one interface of a node with the kernel's timestamps.

``python -m testbed.media.tap --interface IF --out PREFIX [--snaplen 200] [--pcap-limit-mb 256]`` prints
``{"event":"ready"}`` once capturing; on SIGTERM/SIGINT it writes its files, prints
``{"event":"done","packets":N,"rtcp":M,"dropped":K,...}`` and exits 0.

Timestamps: ``SO_TIMESTAMPNS`` (CLOCK_REALTIME, ns). Outgoing packets are stamped when the device
transmits them (after the node's qdiscs, so after its shaper), incoming ones when the device receives.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from testbed.errors import ExitCode
from testbed.media.tap.bpf import attach_filter, rtp_filter
from testbed.media.tap.frames import DEFAULT_SNAPLEN, MIN_SNAPLEN, parse_frames
from testbed.media.tap.pcap import PcapWriter
from testbed.media.tap.records import RECORD_FIELDS, empty_columns, save_records
from testbed.proc import StopSignals, emit
from testbed.sockopts import ETH_P_ALL, PACKET_OUTGOING, PACKET_STATISTICS, SOL_PACKET, big_buffer, receive_timestamps

__all__ = ["DEFAULT_PCAP_LIMIT_MB", "Tap", "main", "tap_command"]

DEFAULT_PCAP_LIMIT_MB = 256
RECEIVE_BUFFER = 16 << 20
CHUNK = 4096  # packets parsed (vectorised) and written to the pcap at a time


class Tap:
    """The capture loop: raw frames go into a fixed buffer, parsed and written ``CHUNK`` at a time."""

    def __init__(
        self,
        interface: str,
        out_prefix: str | Path,
        snaplen: int = DEFAULT_SNAPLEN,
        pcap_limit: int = DEFAULT_PCAP_LIMIT_MB << 20,
    ):
        if snaplen < MIN_SNAPLEN:
            raise ValueError(f"snaplen {snaplen} is below {MIN_SNAPLEN}, too short for IPv4+UDP+RTP headers")
        self.interface = interface
        self.prefix = Path(out_prefix)
        self.snaplen = snaplen
        self.buffer = bytearray(CHUNK * snaplen)
        view = memoryview(self.buffer)
        self.slots = [[view[i * snaplen : (i + 1) * snaplen]] for i in range(CHUNK)]
        self.frames = np.frombuffer(self.buffer, dtype=np.uint8).reshape(CHUNK, snaplen)
        self.stamps: list[bytes] = []
        self.kinds: list[int] = []
        self.lengths: list[int] = []
        self.chunks: list[dict[str, Any]] = []
        self.captured = 0
        self.rtcp = 0
        self.other = 0
        self.stopping = False
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: nothing arrives yet
        try:
            big_buffer(self.sock, socket.SO_RCVBUF, RECEIVE_BUFFER)
            receive_timestamps(self.sock)
            attach_filter(self.sock, rtp_filter(snaplen))
            self.sock.bind((interface, ETH_P_ALL))  # from here on, only filtered frames of this interface
            self.sock.setblocking(False)
            self.pcap = PcapWriter(self.prefix.with_name(self.prefix.name + ".pcap"), snaplen, pcap_limit)
        except BaseException:
            self.sock.close()
            raise
        self.started_ns = time.time_ns()

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(self, wakeup: int | None = None) -> None:
        """Capture until :meth:`stop` (called from a signal handler), then read what the kernel had
        already queued (at most one more chunk if packets keep coming faster than they are read)."""
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        if wakeup is not None:
            selector.register(wakeup, selectors.EVENT_READ)
        recv = self.sock.recvmsg_into
        slots, stamps, kinds, lengths = self.slots, self.stamps, self.kinds, self.lengths
        ancillary_size = socket.CMSG_SPACE(16)
        while True:
            try:
                while True:  # read until the queue is empty: no poll per packet under load
                    i = len(lengths)
                    n, ancillary, _, address = recv(slots[i], ancillary_size)
                    stamps.append(ancillary[0][2] if ancillary else _now_timespec())
                    kinds.append(address[2])
                    lengths.append(n)
                    if i + 1 == CHUNK:
                        self.flush()
                        if self.stopping:
                            raise _Overloaded
            except BlockingIOError:
                if self.stopping:
                    break
                for key, _ in selector.select(timeout=1.0):
                    if key.fd == wakeup:
                        _drain(wakeup)
            except _Overloaded:
                break
        selector.close()
        self.flush()

    def flush(self) -> None:
        n = len(self.lengths)
        if n == 0:
            return
        stamps = np.frombuffer(b"".join(self.stamps), dtype=np.int64).reshape(n, 2)
        time_ns = stamps[:, 0] * 1_000_000_000 + stamps[:, 1]
        direction = (np.array(self.kinds, dtype=np.uint8) == PACKET_OUTGOING).astype(np.uint8)
        caplen = np.array(self.lengths, dtype=np.int64)
        frames = self.frames[:n]
        parsed = parse_frames(frames, caplen)
        self.pcap.write(time_ns, frames, caplen, parsed.orig_len)
        chunk = dict(parsed.columns, time_ns=time_ns[parsed.rtp], direction=direction[parsed.rtp])
        self.chunks.append(chunk)
        self.captured += n
        rtcp = int(parsed.rtcp.sum())
        self.rtcp += rtcp
        self.other += n - rtcp - int(parsed.rtp.sum())
        self.stamps.clear()
        self.kinds.clear()
        self.lengths.clear()

    def statistics(self) -> tuple[int, int]:
        """(packets that passed the filter, packets dropped for a full receive buffer); resets them."""
        packets, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        return packets, drops

    def finish(self) -> dict[str, Any]:
        """Close the socket, write ``PREFIX.npz``, close the pcap; return the summary."""
        passed, dropped = self.statistics()
        self.sock.close()
        self.pcap.close()
        columns = (
            {name: np.concatenate([c[name] for c in self.chunks]) for name in RECORD_FIELDS}
            if self.chunks
            else empty_columns()
        )
        summary = {
            "packets": int(len(columns["time_ns"])),
            "rtcp": self.rtcp,
            "dropped": dropped,
            "other": self.other,
            "kernel_passed": passed,
            "pcap_bytes": self.pcap.written,
            "pcap_skipped": self.pcap.skipped,
        }
        meta = dict(
            summary,
            interface=self.interface,
            snaplen=self.snaplen,
            started_ns=self.started_ns,
            stopped_ns=time.time_ns(),
        )
        save_records(self.prefix.with_name(self.prefix.name + ".npz"), columns, meta)
        return summary


class _Overloaded(Exception):
    """Stop requested while packets still arrive faster than they are read."""


def _now_timespec() -> bytes:
    return struct.pack("qq", *divmod(time.time_ns(), 1_000_000_000))


def _drain(fd: int) -> None:
    try:
        os.read(fd, 512)
    except BlockingIOError:
        pass


def tap_command(
    interface: str,
    out_prefix: str | Path,
    snaplen: int = DEFAULT_SNAPLEN,
    pcap_limit_mb: int = DEFAULT_PCAP_LIMIT_MB,
    python: str = sys.executable,
) -> list[str]:
    """The argv that runs a tap (start it inside the node, e.g. with ``node.popen``)."""
    return [
        python,
        "-m",
        "testbed.media.tap",
        "--interface",
        interface,
        "--out",
        str(out_prefix),
        "--snaplen",
        str(snaplen),
        "--pcap-limit-mb",
        str(pcap_limit_mb),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.media.tap",
        description="Per-packet truth, independent of aiortc: every RTP packet seen on one interface of a node.",
    )
    parser.add_argument("--interface", required=True, help="interface of this node to capture on")
    parser.add_argument("--out", required=True, help="output prefix: PREFIX.npz and PREFIX.pcap")
    parser.add_argument("--snaplen", type=int, default=DEFAULT_SNAPLEN, help="bytes kept per packet")
    parser.add_argument(
        "--pcap-limit-mb",
        type=int,
        default=DEFAULT_PCAP_LIMIT_MB,
        help="stop writing the pcap past this size (records go on)",
    )
    args = parser.parse_args(argv)
    tap: Tap | None = None

    def stop() -> None:
        if tap is None:
            raise SystemExit(ExitCode.OK)  # stopped before capturing: nothing to write
        tap.stop()

    signals = StopSignals(stop)
    try:
        tap = Tap(args.interface, args.out, args.snaplen, args.pcap_limit_mb << 20)
    except (OSError, ValueError) as error:
        code = ExitCode.MISSING_CAPABILITY if isinstance(error, PermissionError) else ExitCode.BAD_INPUT
        hint = " (needs CAP_NET_RAW: run as root)" if code == ExitCode.MISSING_CAPABILITY else ""
        emit("error", message=f"tap on {args.interface!r}: {error}{hint}")
        return code
    emit("ready", interface=args.interface)
    tap.run(signals.fileno())
    summary = tap.finish()
    summary["cpu_seconds"] = round(time.process_time(), 3)
    emit("done", **summary)
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
