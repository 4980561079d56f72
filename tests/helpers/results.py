"""Result files built in memory for tests of pure logic: a call, a stored run."""

from __future__ import annotations

from testbed.results import CallScores, DirectionScores, RunResult


def one_call(mos: float) -> CallScores:
    return CallScores(
        id="call",
        name="call",
        outcome="connected",
        reason="",
        setup_s=0.1,
        codec="opus",
        dscp=46,
        directions={"a->b": DirectionScores(codec="opus", wideband=True, mos_emodel=mos, mos_pesq=mos)},
    )


def run_result(values: list[float]) -> RunResult:
    """A stored run whose only variant 'ef' ran len(values) times."""
    variants = [
        {
            "name": f"ef-r{k}",
            "variant": "ef",
            "repetition": k,
            "description": "",
            "router_template": None,
            "t0": 0,
            "duration_s": 1,
            "calls": [one_call(mos).model_dump(by_alias=True)],
            "traffic": [],
            "timeline": [],
            "queues": {"classes": {}, "samples": []},
            "impairment_engine": None,
            "agents": {},
        }
        for k, mos in enumerate(values, start=1)
    ]
    environment = {"host": "h", "kernel": "k", "python": "3", "backend": [], "impairment_engine": [], "started": 0}
    environment["scored_on"] = {"host": "h", "kernel": "k", "python": "3"}
    return RunResult.model_validate(
        {
            "scenario": {"name": "s", "description": "", "file": "s.yaml", "experiment": "e"},
            "environment": environment,
            "variants": variants,
            "thresholds": [],
            "verdict": {"passed": True, "checks": 0, "failed": 0, "first_failure": None},
        }
    )
