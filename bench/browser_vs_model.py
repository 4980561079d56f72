"""Benchmark: Chromium's own NetEq against the playout model, under random loss.

One call from a headless Chromium on the client to the aiortc gateway (so the browser listens to the
gateway's clip) over a WAN with --loss random loss each way, for --duration seconds. Prints for the
direction the browser hears: the network loss the taps saw, the concealed fraction, mean buffer delay,
PESQ and E-model MOS as Chrome reports and plays them and as the playout model computes them for the
same packets, and Chrome's FEC counters. Where they differ is where the model and the real NetEq part.

Usage: sudo .venv/bin/python bench/browser_vs_model.py [--loss 2] [--duration 60]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import yaml

import testbed
from testbed.results import DirectionScores

SCENARIO = {
    "name": "browser-vs-model",
    "calls": [{"name": "rep", "from": "client", "to": "gateway", "endpoint": {"from": "chromium"}}],
}


def fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loss", type=float, default=2.0, help="random loss on the WAN, percent, each way")
    parser.add_argument("--duration", type=float, default=60.0, help="call length in seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="browser-vs-model-") as work:
        scenario = dict(SCENARIO)
        scenario["calls"] = [{**SCENARIO["calls"][0], "duration": f"{args.duration:g}s"}]
        loss = {"loss": f"{args.loss:g}%"}
        scenario["links"] = {"wan": {"router": loss, "gateway": loss}}
        path = Path(work) / "scenario.yaml"
        path.write_text(yaml.safe_dump(scenario))
        result = testbed.load(path).run(out_dir=Path(work) / "out")
        call = result.variants[0].calls[0]
        print(f"{args.loss:g}% random loss each way, {args.duration:g} s call, Chromium -> aiortc: {call.outcome}")
        heard = call.directions.get("gateway->client")
        if not isinstance(heard, DirectionScores) or heard.browser is None or heard.model is None:
            print(f"no browser figures for gateway->client: {heard}")
            return
        chrome, model = heard.browser, heard.model
        network = heard.network.loss.fraction if heard.network else None
        print(f"  {chrome.version}")
        print(f"  network loss (taps)        {fmt(network, 100)} %   (Chrome counted {chrome.packets_lost} lost)")
        rows = [
            ("concealed %", fmt(chrome.concealed_fraction, 100), fmt(model.concealed_fraction, 100)),
            ("mean buffer delay ms", fmt(chrome.mean_jitter_buffer_ms, 1, 1), fmt(model.mean_buffer_delay_ms, 1, 1)),
            ("PESQ-WB", fmt(chrome.mos_pesq), fmt(model.mos_pesq)),
            ("MOS E-model", fmt(heard.mos_emodel), fmt(model.mos_emodel)),
        ]
        print(f"  {'':26} {'Chrome':>8} {'model':>8}")
        for label, ours, theirs in rows:
            print(f"  {label:26} {ours:>8} {theirs:>8}")
        print(f"  FEC packets received/discarded: {chrome.fec_packets_received}/{chrome.fec_packets_discarded}")
        print(
            f"  concealment events: {chrome.concealment_events}; inserted/removed samples: "
            f"{chrome.inserted_samples}/{chrome.removed_samples}"
        )


if __name__ == "__main__":
    main()
