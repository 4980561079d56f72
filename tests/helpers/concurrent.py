"""Two `testbed run` of the same scenario at the same time, and what shows that they never met: their own
run ids and namespaces, taps that saw only their own calls' packets, and overlapping workloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from testbed.lab.registry import Registry
from testbed.media.tap.records import load_records
from tests.helpers.lab import start_testbed

IDLE_CALL = "name: idle\n%scalls: [{name: call, from: client, to: gateway, talk: 5s}]\n"


def run_two_at_once(tmp_path: Path, backend: str) -> list[dict[str, Any]]:
    """Both runs' result.json, after checking each exited 0."""
    scenario = tmp_path / "idle.yaml"
    scenario.write_text(IDLE_CALL % ("backend: docker\n" if backend == "docker" else ""))
    outs = [tmp_path / f"run{i}" for i in (1, 2)]
    processes = [start_testbed("run", str(scenario), "--out", str(out), "--no-live") for out in outs]
    for process in processes:
        _, errors = process.communicate(timeout=240)
        assert process.returncode == 0, errors
    return [json.loads((out / "result.json").read_text()) for out in outs]


def check_they_never_met(tmp_path: Path, results: list[dict[str, Any]], registry: Registry) -> None:
    assert len(set(registry.history())) == 2, "each run registered under its own id"
    workloads = [json.loads((tmp_path / f"run{i}" / "default" / "workload.json").read_text()) for i in (1, 2)]
    spans = [(w["t0"], w["t0"] + w["phases"]["workload"]) for w in workloads]
    overlap = min(end for _, end in spans) - max(start for start, _ in spans)
    assert overlap > 3.0, f"the two workloads overlapped {overlap:.1f} s only: the test proves nothing"
    labs = [json.loads((tmp_path / f"run{i}" / "default" / "lab.json").read_text()) for i in (1, 2)]
    namespaces = [{node["netns"] for node in lab["nodes"].values()} for lab in labs]
    assert not namespaces[0] & namespaces[1], "the runs shared a namespace"
    own = []
    for workload in workloads:
        ssrcs = {side["sent_ssrc"] for call in workload["calls"] for side in call["sides"].values()}
        seen: set[int] = set()
        for prefix in workload["taps"].values():
            seen |= {int(s) for s in np.unique(load_records(Path(prefix)).ssrc)}
        assert seen == ssrcs, f"a tap saw packets of streams not its run's: {seen - ssrcs}"
        own.append(ssrcs)
    assert not own[0] & own[1]
    for result in results:  # an idle link: a MOS below 4 can only be the host falling behind, and is said so
        variant = result["variants"][0]
        for call in variant["calls"]:
            assert call["outcome"] == "connected"
            for label, direction in call["directions"].items():
                if direction["mos_pesq"] < 4.0:
                    assert variant["harness"]["flagged"], (label, direction["mos_pesq"], variant["harness"])
