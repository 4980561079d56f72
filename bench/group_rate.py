"""Benchmark: what a group of calls sends per second, with each call's clip at its own offset (the default),
with every call playing its clip in step (as before offsets existed), and talking in turns (ITU-T P.59
conversations: ``speech: {pattern: conversation}``).

Runs --calls aiortc calls (``count: N``) for --talk seconds on an idle link, twice, and prints from the
client's tap the group's rate per second (client -> gateway, all calls together): mean, standard
deviation, min and max, and the mean per call; and the per-call rate the clip's payloads predict.
Opus' variable bitrate makes calls that talk in step peak together.

Usage: sudo .venv/bin/python bench/group_rate.py [--calls 10] [--talk 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import yaml

import testbed
from testbed.media.encoded_clip import encoded_clip
from testbed.media.tap.records import load_records
from testbed.workload import calls as workload_calls


def group_rates(out: Path) -> np.ndarray:
    """The group's client -> gateway bits per whole second, from the client's tap."""
    workload = json.loads((out / "default" / "workload.json").read_text())
    records = load_records(out / "default" / "taps" / "client-lan")
    times, sizes = [], []
    for call in workload["calls"]:
        stream = records.stream(call["sides"]["caller"]["sent_ssrc"])
        times.append(stream.time_ns)
        sizes.append(stream.size.astype(np.int64))
    t, size = np.concatenate(times), np.concatenate(sizes)
    start, end = t.min(), t.max()
    seconds = ((t - start) // 1_000_000_000).astype(np.int64)
    whole = int((end - start) // 1_000_000_000)
    per_second = np.bincount(seconds, weights=size * 8, minlength=whole + 1)[1:whole]  # drop partial edges
    return per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--talk", type=float, default=20.0)
    args = parser.parse_args()
    scenario = {"name": "group-rate", "calls": [{"name": "rep", "count": args.calls, "talk": f"{args.talk:g}s"}]}
    payload = float(np.mean([len(p) for p in encoded_clip("opus", "client")]))
    print(f"{args.calls} Opus calls, {args.talk:g} s of talk; the clip's mean payload {payload:.1f} bytes")
    talking_in_turns = {**scenario, "calls": [{**scenario["calls"][0], "speech": {"pattern": "conversation"}}]}
    for label, in_step, asked in (
        ("own offsets", False, scenario),
        ("in step", True, scenario),
        ("in turns", False, talking_in_turns),
    ):
        with tempfile.TemporaryDirectory(prefix="group-rate-") as work:
            path = Path(work) / "scenario.yaml"
            path.write_text(yaml.safe_dump(asked))
            every_call_at_zero = mock.patch.object(workload_calls, "clip_offsets", return_value={})
            with every_call_at_zero if in_step else contextlib.nullcontext():
                testbed.load(path).run(out_dir=Path(work) / "out", scoring=testbed.ScoringOptions(pesq=False))
            rates = group_rates(Path(work) / "out") / 1000
        print(
            f"  {label:12} group kbit/s per second: mean {rates.mean():7.1f}  sd {rates.std():6.1f}  "
            f"min {rates.min():7.1f}  max {rates.max():7.1f}  (per call {rates.mean() / args.calls:5.1f})"
        )


if __name__ == "__main__":
    main()
