"""Scoring on every core gives what scoring call by call gives: a run of six light calls scored by the
runner's worker processes, then again (two of them sampled for PESQ: decoded audio, WAVs) in one
process and in two."""

from __future__ import annotations

import json

import yaml

from testbed.rescore_pool import score_variant, score_variants
from testbed.results import WorkloadRecord
from testbed.scoring.options import ScoringOptions
from tests.helpers import REPO
from tests.helpers.lab import run_testbed


def test_worker_processes_score_as_one_process_does(registry, no_leftovers, tmp_path):
    scenario = yaml.safe_load((REPO / "scenarios" / "call-centre.yaml").read_text())
    scenario["calls"][0].update(count=6, talk="4s")
    scenario["traffic"][0]["rate"] = "45mbit"  # a little loss in fifo: the figures are not all alike
    path = tmp_path / "six.yaml"
    path.write_text(yaml.safe_dump(scenario))
    out = tmp_path / "out"
    done = run_testbed("run", str(path), "--variant", "fifo", "--out", str(out), timeout=300)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    assert "scoring 6 calls in 2 processes" in done.stderr, done.stderr[-2000:]
    variant_dir = out / "fifo"
    workload = WorkloadRecord.load(variant_dir / "workload.json")
    pooled = json.loads((variant_dir / "scores.json").read_text())
    options = ScoringOptions(pesq_calls=2)
    alone = score_variant(variant_dir, workload, options).model_dump(mode="json")
    together = score_variants([(variant_dir, workload)], options, workers=2)[0].model_dump(mode="json")
    assert together == alone
    assert [c["id"] for c in pooled["calls"]] == [c["id"] for c in alone["calls"]]
    sampled = [c for c in alone["calls"] if any(d.get("mos_pesq") for d in c["directions"].values())]
    assert len(sampled) == 2
    assert all(list((variant_dir / "audio").glob(f"{call['id']}-*.wav")) for call in sampled)
