"""Benchmark: call directions scored per second, for a 10 s Opus call direction.

One direction = netstats on the tap arrays + jitter buffer and libopus decode with PLC (playout) +
PESQ-WB against the looped clip. The packets are the client clip encoded by aiortc's Opus encoder, over a
network with 1 % random loss and 60 +- 20 ms uniform jitter. Prints the time of each stage (median of
the repetitions), directions per second in one process, and with one worker process per core.
Target (scoring issue): >= 10 directions/s on the 2-core machine.
Usage: .venv/bin/python bench/scoring_speed.py [--repeat 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from testbed.media.clips import load_clip
from testbed.media.encoded_clip import encoded_clip
from testbed.scoring.netstats import network_stats
from testbed.scoring.pesq import pesq_score
from testbed.scoring.playout import ReceivedPackets, playout, simulate_arrivals

FRAME_NS = 20_000_000


def make_direction(seconds: float, seed: int = 1) -> dict[str, np.ndarray]:
    """The arrays the lab would store for one direction: receiver record + tap truth."""
    payloads = encoded_clip("opus", "client")
    n = int(seconds / 0.02)
    rng = np.random.default_rng(seed)
    delays = 60 + rng.uniform(-20, 20, n)
    lost = rng.random(n) < 0.01
    packets = simulate_arrivals(payloads, "opus", delays, lost)
    send = packets.arrival_ns[0] - int(delays[~lost][0] * 1e6) + np.arange(n, dtype=np.int64) * FRAME_NS
    recv = np.where(lost, -1, send + np.round(delays * 1e6).astype(np.int64))
    sizes = np.array([len(p) for p in packets.payloads], dtype=np.int32)
    return {
        "arrival_ns": packets.arrival_ns,
        "seq": packets.seq,
        "rtp_ts": packets.rtp_ts,
        "payload_sizes": sizes,
        "payload": np.frombuffer(b"".join(packets.payloads), dtype=np.uint8),
        "tap_seq": np.arange(n, dtype=np.int64),
        "tap_send": send,
        "tap_recv": recv,
    }


def score(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """Score one direction; returns the time of each stage in seconds (and the MOS)."""
    t0 = time.perf_counter()
    net = network_stats(arrays["tap_seq"], arrays["tap_send"], arrays["tap_recv"])
    t1 = time.perf_counter()
    result = playout(ReceivedPackets.from_arrays(**arrays), "opus")
    t2 = time.perf_counter()
    mos = pesq_score(
        result.audio, result.rate, load_clip("client", 16000), 16000, loop_frames=len(encoded_clip("opus", "client"))
    ).mos
    t3 = time.perf_counter()
    return {
        "netstats": t1 - t0,
        "playout": t2 - t1,
        "pesq": t3 - t2,
        "total": t3 - t0,
        "mos": mos or 0.0,
        "loss": net.loss.fraction,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    arrays = make_direction(args.seconds)
    score(arrays)  # warm up: encoder cache, libopus, imports
    runs = [score(arrays) for _ in range(args.repeat)]
    med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    print(f"one {args.seconds:g} s Opus direction (network loss {med['loss']:.1%}, PESQ-WB {med['mos']:.2f}):")
    for stage in ("netstats", "playout", "pesq", "total"):
        print(f"  {stage:9s} {med[stage] * 1000:7.1f} ms")
    print(f"one process: {1 / med['total']:.1f} directions/s")
    workers = os.cpu_count() or 1
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(score, [arrays] * workers))  # warm up the workers
        start = time.perf_counter()
        list(pool.map(score, [arrays] * (args.repeat * workers)))
        elapsed = time.perf_counter() - start
    print(f"{workers} worker processes: {args.repeat * workers / elapsed:.1f} directions/s")


if __name__ == "__main__":
    main()
