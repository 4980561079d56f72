"""Benchmark: what one late frame costs, in the playout model and in Chromium's own NetEq.

Part 1 (offline, no lab): the gateway clip as browsers encode Opus, over a path of 10 ms one way, with
one packet held back by --spike ms at each of --positions places in the clip (the packets behind it
wait too: a queue keeps its order). PESQ-WB against the same path without the spike gives the cost,
per position, of: the playout model (as NetEq: concealment until the late packet is there, then it
plays and accelerate cuts the wait out of what follows: ``testbed.scoring.neteq``); concealing the
waited-for frames in place instead (the model before); and the expansion alone, never taken back.

Part 2 (--lab): the same on a real path. A Chromium client calls the aiortc gateway; the gateway's side
of the WAN follows a trace of 10 ms with one spike of --spike ms lasting one packet, at a different
moment in each of --runs calls of --talk seconds, plus one call without a spike. For the direction the
browser hears it prints Chrome's own playout (concealment events, concealed ms, PESQ of what it played)
beside the playout model on the same packets (late frames, PESQ).

Usage: sudo .venv/bin/python bench/late_frame.py [--spike 60] [--positions 40] [--lab --runs 6]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import yaml

import testbed
from testbed.media.clips import load_clip
from testbed.media.encoded_clip import encoded_clip
from testbed.results import DirectionScores
from testbed.scoring.decode import decode_frames
from testbed.scoring.pesq import pesq_score
from testbed.scoring.playout import playout, simulate_arrivals

BASE_MS = 10.0


def spiked_delays(frames: int, at: int, spike_ms: float) -> np.ndarray:
    """One-way delay per packet: BASE_MS, packet ``at`` held ``spike_ms`` longer, later ones queued behind it."""
    delays = np.full(frames, BASE_MS)
    if at >= 0:
        delays[at] += spike_ms
        for k in range(at + 1, frames):  # a queue keeps its order: none overtakes the held packet
            delays[k] = max(delays[k], delays[k - 1] - 20.0)
    return delays


def offline(spike_ms: float, positions: int) -> None:
    payloads = encoded_clip("opus", "gateway")
    clip = load_clip("gateway", 16000)
    loops = 2  # 2 loops of the clip: the buffer settles during the first, the spike falls in the second
    frames = loops * len(payloads)

    def pesq_with(at: int) -> tuple[float, int]:
        heard = playout(simulate_arrivals(payloads, "opus", spiked_delays(frames, at, spike_ms)), "opus")
        second_loop = heard.audio[len(payloads) * heard.rate // 50 :]  # one clip's length, as a 10 s call
        score = pesq_score(second_loop, heard.rate, clip, 16000, loop_frames=len(payloads))
        return float(score.mos or 0.0), heard.expanded + heard.late

    def pesq_of(audio: np.ndarray) -> float:
        return float(pesq_score(audio, 16000, clip, 16000, loop_frames=len(payloads)).mos or 0.0)

    clean, _ = pesq_with(-1)
    costs: dict[str, list[float]] = {"model (NetEq-like)": [], "conceal in place": [], "expansion kept": []}
    lates = []
    expand = max(1, int(round((spike_ms - BASE_MS) / 20)))  # frames NetEq expands before the packet is there
    for at in np.linspace(len(payloads) + 40, frames - 40, positions).astype(int).tolist():
        mos, late = pesq_with(at)
        costs["model (NetEq-like)"].append(clean - mos)
        lates.append(late)
        f = at - len(payloads)  # the same place in a single loop, for the what-ifs
        in_place = [None if f <= k < f + expand else p for k, p in enumerate(payloads)]
        costs["conceal in place"].append(clean - pesq_of(decode_frames("opus", in_place, 16000)))
        shifted = decode_frames("opus", list(payloads[:f]) + [None] * expand + list(payloads[f:]), 16000)
        costs["expansion kept"].append(clean - pesq_of(shifted))
    print(f"offline: Opus 32 kbit/s, {BASE_MS:g} ms path, one packet {spike_ms:g} ms late at {positions} places")
    print(f"  PESQ-WB without a spike {clean:.2f}; frames the model conceals per spike {min(lates)}-{max(lates)}")
    for label, values in costs.items():
        c = np.array(values)
        print(
            f"  {label:24} cost: mean {c.mean():.2f}  median {np.median(c):.2f}  p90 {np.percentile(c, 90):.2f}  "
            f"max {c.max():.2f}  min {c.min():.2f}"
        )


def trace_rows(spike_at_s: float | None, spike_ms: float) -> str:
    rows = ["time_s,delay_ms", f"0,{BASE_MS:g}"]
    if spike_at_s is not None:
        rows += [f"{spike_at_s:.3f},{BASE_MS + spike_ms:g}", f"{spike_at_s + 0.02:.3f},{BASE_MS:g}"]
    return "\n".join(rows) + "\n"


def lab(spike_ms: float, runs: int, talk: float) -> None:
    print(
        f"lab: Chromium listens to the aiortc gateway, {talk:g} s calls, {BASE_MS:g} ms path, one {spike_ms:g} ms spike"
    )
    print(f"  {'spike at':>9} {'Chrome events':>13} {'concealed ms':>12} {'PESQ':>5}   {'model conc.':>11} {'PESQ':>5}")
    moments: list[float | None] = [None] + [4.0 + i * (talk - 3.0) / max(runs, 1) for i in range(runs)]
    for moment in moments:
        with tempfile.TemporaryDirectory(prefix="late-frame-") as work:
            (Path(work) / "spike.csv").write_text(trace_rows(moment, spike_ms))
            scenario = {
                "name": "late-frame",
                "calls": [{"name": "rep", "endpoint": {"from": "chromium"}, "talk": f"{talk:g}s"}],
                "links": {"wan": {"gateway": {"trace": "spike.csv"}}},
            }
            path = Path(work) / "scenario.yaml"
            path.write_text(yaml.safe_dump(scenario))
            result = testbed.load(path).run(out_dir=Path(work) / "out")
        heard = result.variants[0].calls[0].directions.get("gateway->client")
        if not isinstance(heard, DirectionScores) or heard.browser is None or heard.model is None:
            print(f"  {moment!s:>9} no browser figures: {heard}")
            continue
        chrome = heard.browser
        concealed_ms = (chrome.concealed_fraction or 0.0) * (chrome.played_s or 0.0) * 1000
        late = heard.playout.late + heard.playout.expanded if heard.playout else 0
        label = "none" if moment is None else f"{moment:.2f} s"
        print(
            f"  {label:>9} {chrome.concealment_events!s:>13} {concealed_ms:12.0f} {chrome.mos_pesq or 0:5.2f}   "
            f"{late:>11} {heard.model.mos_pesq or 0:5.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spike", type=float, default=60.0, help="how much later the one packet arrives, ms")
    parser.add_argument("--positions", type=int, default=40, help="offline: places in the clip to try")
    parser.add_argument("--lab", action="store_true", help="also run real calls with a Chromium listener")
    parser.add_argument("--runs", type=int, default=6, help="lab: calls with a spike (plus one without)")
    parser.add_argument("--talk", type=float, default=10.0, help="lab: talk time per call, seconds")
    args = parser.parse_args()
    offline(args.spike, args.positions)
    if args.lab:
        lab(args.spike, args.runs, args.talk)


if __name__ == "__main__":
    main()
