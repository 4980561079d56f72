"""Hand-made scores for tests of reports and thresholds (pure)."""

from __future__ import annotations

from typing import Any


def network_stats(loss: float = 0.0, p95: float = 20.0) -> dict[str, Any]:
    """A direction's ``network`` block: 500 packets, ``loss`` as the lost fraction, ``p95`` ms delay."""
    none = dict.fromkeys(("min_ms", "p50_ms", "p99_ms", "max_ms", "mean_ms"))
    series = dict.fromkeys(
        ("start_s", "sent", "lost", "loss_fraction", "mean_delay_ms", "p95_delay_ms", "jitter_ms"), []
    )
    return {
        "loss": {
            "sent": 500,
            "received": 500,
            "lost": 0,
            "fraction": loss,
            "runs": 0,
            "mean_burst": 0.0,
            "max_burst": 0,
            "burst_ratio": 1.0,
        },
        "delay": {**none, "p95_ms": p95},
        "jitter": {"final_ms": 1.0, "mean_ms": 1.0, "max_ms": 1.0},
        "reordered": 0,
        "duplicates": 0,
        "per_second": series,
    }


def environment(impairment_engine: str = "none") -> dict[str, Any]:
    """A result's ``environment`` block for a run on host ``h``."""
    here = {"host": "h", "kernel": "k", "python": "3.11"}
    return {**here, "backend": ["netns"], "impairment_engine": [impairment_engine], "started": None, "scored_on": here}


def run_result(variants: dict[str, list[Any]], checks: list[Any] | None = None) -> Any:
    """A RunResult of the given scored calls per variant and threshold checks (one repetition each)."""
    from testbed.results import RunResult

    checks = checks or []
    failures = [c for c in checks if not c.passed]
    return RunResult.model_validate(
        {
            "scenario": {"name": "office", "description": "", "file": "office.yaml"},
            "environment": environment("userspace"),
            "variants": [
                {
                    "name": name,
                    "variant": name,
                    "repetition": 1,
                    "description": "",
                    "router_template": None,
                    "t0": 0.0,
                    "duration_s": 10.0,
                    "calls": calls,
                    "timeline": [],
                    "traffic": [],
                    "queues": {"classes": {}, "samples": []},
                    "impairment_engine": None,
                    "agents": {},
                }
                for name, calls in variants.items()
            ],
            "thresholds": checks,
            "verdict": {
                "passed": not failures,
                "checks": len(checks),
                "failed": len(failures),
                "first_failure": failures[0].message if failures else None,
            },
        }
    )
