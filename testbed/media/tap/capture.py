"""The tap process: capture RTP on one interface of a node with the kernel's timestamps.

``python -m testbed.media.tap --interface IF --out PREFIX [--snaplen 200] [--pcap-limit-mb 256]`` prints
``{"event":"ready"}`` once capturing; on SIGTERM/SIGINT it writes its files, prints
``{"event":"done","packets":N,"rtcp":M,"dropped":K,"ring_frames":F,...}`` and exits 0.

Frames arrive through a memory-mapped ring (:mod:`.ring`, ``TPACKET_V2``) of ``RING_FRAMES`` (128Ki)
fixed-size frames, about 1.3 s of 100k packets/s at the default snap length (288-byte frames, ~36 MiB).
The tap waits until the socket polls readable, lets ``BATCH_WAIT`` pass so a batch gathers, then takes
every ready frame (copied out, the ring's frames handed back at once); frames are parsed (vectorised)
and written to the pcap ``BATCH`` at a time, as before. ``dropped`` counts packets the ring had no room
for.

Timestamps: the kernel's software stamp of each frame (CLOCK_REALTIME, ns). ``SO_TIMESTAMPNS`` is set
on the socket although the ring never delivers its ancillary data: it turns on the kernel's network
timestamping, so packets are stamped where the stack first sees them, as the ancillary stamps were
(without it the ring falls back to reading the clock when it copies the frame; ``unstamped`` in the
records' meta counts such frames). Outgoing packets are stamped when the device
transmits them (after the node's qdiscs, so after its shaper), incoming ones when the device receives.
"""

from __future__ import annotations

import argparse
import os
import select
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
from testbed.media.tap.ring import RING_FRAMES, Batch, Geometry, PacketRing
from testbed.proc import StopSignals, emit
from testbed.sockopts import ETH_P_ALL, PACKET_STATISTICS, SOL_PACKET, receive_timestamps

__all__ = ["BATCH", "BATCH_WAIT", "DEFAULT_PCAP_LIMIT_MB", "Tap", "main", "tap_command"]

DEFAULT_PCAP_LIMIT_MB = 256
BATCH = 8192  # frames parsed (vectorised) and written to the pcap at a time
BATCH_WAIT = 0.02  # seconds from a wake-up to the read: 2000 frames at 100k/s, 1.5% of the ring


class Tap:
    """The capture loop: ready frames are taken from the ring, parsed and written ``BATCH`` at a time."""

    def __init__(
        self,
        interface: str,
        out_prefix: str | Path,
        snaplen: int = DEFAULT_SNAPLEN,
        pcap_limit: int = DEFAULT_PCAP_LIMIT_MB << 20,
        ring_frames: int = RING_FRAMES,
    ):
        if snaplen < MIN_SNAPLEN:
            raise ValueError(f"snaplen {snaplen} is below {MIN_SNAPLEN}, too short for IPv4+UDP+RTP headers")
        self.interface = interface
        self.prefix = Path(out_prefix)
        self.snaplen = snaplen
        self.staged: list[Batch] = []  # read from the ring, not parsed yet
        self.staged_frames = 0
        self.chunks: list[dict[str, Any]] = []
        self.captured = 0
        self.rtcp = 0
        self.other = 0
        self.unstamped = 0  # frames the ring stamped itself (network timestamping was still off)
        self.stopping = False
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: nothing arrives yet
        ring: PacketRing | None = None
        try:
            receive_timestamps(self.sock)
            attach_filter(self.sock, rtp_filter(snaplen))
            ring = PacketRing(self.sock, Geometry.for_snaplen(snaplen, ring_frames), snaplen)
            self.sock.bind((interface, ETH_P_ALL))  # from here on, only filtered frames of this interface
            self.sock.setblocking(False)
            self.pcap = PcapWriter(self.prefix.with_name(self.prefix.name + ".pcap"), snaplen, pcap_limit)
        except BaseException:
            if ring is not None:
                ring.close()
            self.sock.close()
            raise
        self.ring = ring
        self.started_ns = time.time_ns()

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(self, wakeup: int | None = None) -> None:
        """Capture until :meth:`stop` (called from a signal handler), then take what the ring holds: at
        most one lap of it, so a stop ends promptly even while packets keep coming."""
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        if wakeup is not None:
            selector.register(wakeup, selectors.EVENT_READ)
        while not self.stopping:
            if self.read() == BATCH:  # more is ready: no poll, no wait
                continue
            readable = False
            for key, _ in selector.select(timeout=1.0):
                if key.fd == wakeup:
                    _drain(wakeup)
                else:
                    readable = True
            if readable and not self.stopping:
                self._gather(wakeup)
        selector.close()
        left = self.ring.frames
        while left > 0:
            n = self.read(min(BATCH, left))
            left -= n
            if n < BATCH:
                break
        self.flush()

    def _gather(self, wakeup: int | None) -> None:
        """Let ``BATCH_WAIT`` pass (a stop signal cuts it short) so frames are read many at a time."""
        if wakeup is None:
            time.sleep(BATCH_WAIT)
        else:
            select.select([wakeup], [], [], BATCH_WAIT)

    def read(self, limit: int = BATCH) -> int:
        """Take up to ``limit`` ready frames from the ring (which has them back at once); record them
        ``BATCH`` at a time. Returns how many were taken."""
        batch = self.ring.read(limit)
        if len(batch):
            self.staged.append(batch)
            self.staged_frames += len(batch)
            if self.staged_frames >= BATCH:
                self.flush()
        return len(batch)

    def flush(self) -> None:
        """Parse the staged frames (vectorised), write them to the pcap and keep their RTP records."""
        if not self.staged:
            return
        batch = Batch.concatenate(self.staged)
        self.staged.clear()
        self.staged_frames = 0
        n = len(batch)
        parsed = parse_frames(batch.frames, batch.caplen)
        self.pcap.write(batch.time_ns, batch.frames, batch.caplen, parsed.orig_len)
        direction = batch.outgoing.astype(np.uint8)
        chunk = dict(parsed.columns, time_ns=batch.time_ns[parsed.rtp], direction=direction[parsed.rtp])
        self.chunks.append(chunk)
        self.captured += n
        rtcp = int(parsed.rtcp.sum())
        self.rtcp += rtcp
        self.other += n - rtcp - int(parsed.rtp.sum())
        self.unstamped += n - int(batch.software_stamp.sum())

    def statistics(self) -> tuple[int, int]:
        """(packets that passed the filter, packets dropped for a full ring); resets them."""
        packets, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        return packets, drops

    def finish(self) -> dict[str, Any]:
        """Close the socket, write ``PREFIX.npz``, close the pcap; return the summary."""
        passed, dropped = self.statistics()
        self.ring.close()
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
            "ring_frames": self.ring.frames,
        }
        meta = dict(
            summary,
            interface=self.interface,
            snaplen=self.snaplen,
            unstamped=self.unstamped,
            started_ns=self.started_ns,
            stopped_ns=time.time_ns(),
        )
        save_records(self.prefix.with_name(self.prefix.name + ".npz"), columns, meta)
        return summary


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
