"""Benchmark: call directions scored per second, for a 10.9 s wideband Opus call direction (the shipped
clip), through the scoring the testbed runs (``testbed.scoring.direction.score_direction``).

One direction = network statistics on the tap arrays, the playout model (NetEq's schedule, libopus
decoding with concealment), the E-model, and PESQ-WB against the clip. The packets are the client clip
encoded as browsers send Opus, over a network with 1 % random loss and 60 +- 20 ms uniform jitter.
Prints the stages' times (median), then directions per second with PESQ and E-model only, in one
process and in one worker process per core (as ``testbed.rescore_pool`` scores a run).
Targets (speed issue): with PESQ >= 1.8x the one-process rate and >= 8 directions/s; E-model only >= 200.
Usage: .venv/bin/python bench/scoring_speed.py [--repeat 20] [--seconds 10.9]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from testbed.media.clips import load_clip
from testbed.media.encoded_clip import encoded_clip
from testbed.scoring.direction import SentPackets, TapArrivals, score_direction
from testbed.scoring.netstats import network_stats
from testbed.scoring.options import ScoringOptions
from testbed.scoring.pesq import pesq_score
from testbed.scoring.playout import ReceivedPackets, playout, simulate_arrivals

FRAME_NS = 20_000_000
Direction = tuple[SentPackets, TapArrivals, ReceivedPackets]


def make_direction(seconds: float, seed: int = 1) -> Direction:
    """What the lab stores for one direction: the sender's record, the listener's tap, what it received."""
    payloads = encoded_clip("opus", "client")
    n = int(seconds / 0.02)
    rng = np.random.default_rng(seed)
    delays = 60 + rng.uniform(-20, 20, n)
    lost = rng.random(n) < 0.01
    packets = simulate_arrivals(payloads, "opus", delays, lost)
    send = packets.arrival_ns[0] - int(delays[~lost][0] * 1e6) + np.arange(n, dtype=np.int64) * FRAME_NS
    recv = send + np.round(delays * 1e6).astype(np.int64)
    seq = np.arange(n, dtype=np.int64)
    sent = SentPackets(seq, send, seq * 960)
    tap = TapArrivals(seq[~lost], recv[~lost])
    return sent, tap, packets


def score(direction: Direction, pesq: bool) -> float:
    """Score one direction as the testbed does; its wall time."""
    sent, tap, received = direction
    started = time.perf_counter()
    score_direction(
        "opus",
        sent,
        tap,
        received,
        load_clip("client", 16000),
        16000,
        len(encoded_clip("opus", "client")),
        options=ScoringOptions(pesq=pesq),
    )
    return time.perf_counter() - started


def stages(direction: Direction) -> dict[str, float]:
    sent, tap, received = direction
    t0 = time.perf_counter()
    network_stats(sent.seq, sent.send_ns, np.full(len(sent.seq), -1))
    t1 = time.perf_counter()
    heard = playout(received, "opus")
    t2 = time.perf_counter()
    pesq_score(
        heard.audio, heard.rate, load_clip("client", 16000), 16000, loop_frames=len(encoded_clip("opus", "client"))
    )
    t3 = time.perf_counter()
    return {"network statistics": t1 - t0, "playout (decode)": t2 - t1, "PESQ-WB": t3 - t2}


def rate(direction: Direction, pesq: bool, count: int, workers: int) -> float:
    """Directions per second over ``count`` directions, in this process or ``workers`` forked ones."""
    if workers <= 1:
        started = time.perf_counter()
        for _ in range(count):
            score(direction, pesq)
        return count / (time.perf_counter() - started)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(score, [direction] * workers, [pesq] * workers))  # the workers are up
        started = time.perf_counter()
        list(pool.map(score, [direction] * count, [pesq] * count, chunksize=max(1, count // (4 * workers))))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.9)
    args = parser.parse_args()
    direction = make_direction(args.seconds)
    score(direction, True)  # warm up: encoder cache, libopus, imports
    runs = [stages(direction) for _ in range(5)]
    print(f"one {args.seconds:g} s Opus direction, 1% loss, 60 +- 20 ms jitter; stages (median of 5):")
    for name in runs[0]:
        print(f"  {name:20s} {np.median([r[name] for r in runs]) * 1000:7.1f} ms")
    workers = len(os.sched_getaffinity(0))
    for pesq, count in ((True, args.repeat), (False, args.repeat * 20)):
        one = rate(direction, pesq, count, 1)
        many = rate(direction, pesq, count * workers, workers)
        what = "with PESQ" if pesq else "E-model only (--no-pesq)"
        print(f"{what}: one process {one:.1f} directions/s, {workers} processes {many:.1f} ({many / one:.2f}x)")


if __name__ == "__main__":
    main()
