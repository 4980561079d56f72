"""Benchmark: the same call over the direct UDP path and through TURN over TLS on 443, under WAN loss.

Runs ``scenarios/firewall.yaml`` (open NAT, the vendors' rules, UDP blocked) with --loss percent random
loss each way on the WAN and --delay one-way WAN delay, --repeat times, and prints per variant and
direction the median over repetitions of: MOS (E-model, PESQ), network loss, p95 and max one-way delay,
the playout's effective loss (lost + late frames), setup time, and the caller's TCP retransmissions to
the TURN server. Direct UDP turns loss into lost frames; TLS turns it into retransmission delay
(head-of-line blocking), which only the delay and the late frames show.

Usage: sudo .venv/bin/python bench/turn_paths.py [--loss 1] [--delay 50] [--repeat 3] [--duration 20]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from pathlib import Path

import yaml

import testbed
from testbed.results import DirectionScores

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "firewall.yaml"


def median(values: list[float]) -> str:
    return "-" if not values else f"{statistics.median(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loss", type=float, default=1.0, help="random loss on the WAN, percent, each way")
    parser.add_argument("--delay", type=float, default=50.0, help="one-way WAN delay, ms")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20.0, help="call length in seconds")
    args = parser.parse_args()
    scenario = yaml.safe_load(SCENARIO.read_text())
    scenario["calls"][0]["duration"] = f"{args.duration:g}s"
    for end in scenario["links"]["wan"].values():
        end["loss"] = f"{args.loss:g}%"
        end["delay"] = f"{args.delay:g}ms"
    with tempfile.TemporaryDirectory(prefix="turn-paths-") as work:
        path = Path(work) / "firewall.yaml"
        path.write_text(yaml.safe_dump(scenario))
        result = testbed.load(path).run(out_dir=Path(work) / "out", repeat=args.repeat)
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    for variant in result.variants:
        call = variant.calls[0]
        path_label = call.path.label() if call.path else "-"
        for label, scores in call.directions.items():
            name = re.sub(r"-r\d+$", "", variant.name)  # repetitions are NAME-rN
            row = rows.setdefault((name, label), {"path": []})  # type: ignore[dict-item]
            row["path"].append(path_label)  # type: ignore[arg-type]
            if not isinstance(scores, DirectionScores):
                continue
            delay = scores.network.delay if scores.network else None
            figures = {
                "emodel": scores.mos_emodel,
                "pesq": scores.mos_pesq,
                "loss%": 100 * scores.network.loss.fraction if scores.network else None,
                "p95ms": delay.p95_ms if delay else None,
                "maxms": delay.max_ms if delay else None,
                "eff%": 100 * scores.playout.effective_loss if scores.playout else None,
                "setup": call.setup_s,
                "retrans": call.path.relay_tcp.get("retransmitted") if call.path and call.path.relay_tcp else None,
            }
            for key, value in figures.items():
                if value is not None:
                    row.setdefault(key, []).append(float(value))
    print(
        f"{args.loss:g}% loss and {args.delay:g} ms each way on the WAN, {args.duration:g} s calls, "
        f"medians of {args.repeat} repetition(s)"
    )
    keys = ["emodel", "pesq", "loss%", "p95ms", "maxms", "eff%", "setup", "retrans"]
    print(f"{'variant':12} {'direction':16} {'path':22} " + " ".join(f"{k:>7}" for k in keys))
    for (variant, label), row in rows.items():
        paths = sorted(set(row["path"]))  # type: ignore[arg-type]
        cells = " ".join(f"{median(row.get(k, [])):>7}" for k in keys)
        print(f"{variant:12} {label:16} {','.join(paths):22} {cells}")


if __name__ == "__main__":
    main()
