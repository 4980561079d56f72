"""``result.json``: the whole run as data (versioned), built from the run directory's files."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from testbed.report.thresholds import Check
from testbed.scenario.load import LoadedScenario

SCHEMA_VERSION = 1
RESULT = "result.json"


def traffic_summary(record: dict[str, Any]) -> dict[str, Any]:
    """A traffic flow's achieved throughput (from the sink's final report) and its per-second series."""
    done = next((r for r in reversed(record.get("sink_reports", [])) if r.get("event") == "done"), {})
    intervals = [r for r in record.get("sink_reports", []) if r.get("event") == "interval"]
    return {
        "name": record["name"],
        "kind": record["kind"],
        "from": record["source"],
        "to": record["sink"],
        "started_at": record.get("started_at"),
        "stopped_at": record.get("stopped_at"),
        "bps": done.get("bps"),
        "wire_bps": done.get("wire_bps"),
        "error": record.get("error", ""),
        "per_second": [{"t": r.get("t"), "bps": r.get("bps")} for r in intervals],
    }


def build(loaded: LoadedScenario, run_dir: Path, variants: list[dict[str, Any]], checks: list[Check]) -> dict[str, Any]:
    """``variants``: per variant run: name, base variant, repetition, workload, lab, scores."""
    failed = [c for c in checks if not c.passed]
    run_info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    engines = sorted(
        {
            (
                "userspace"
                if v["lab"].get("impairment_engine", {}).get("userspace")
                else "netem"
                if v["lab"].get("impairment_engine", {}).get("kernel_netem")
                else "none"
            )
            for v in variants
        }
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "scenario": {
            "name": loaded.scenario.name,
            "description": loaded.scenario.description,
            "file": str(loaded.path),
        },
        "environment": {
            "host": platform.node(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "backend": loaded.scenario.backend,
            "impairment_engine": engines,
            "started": run_info.get("started"),
        },
        "variants": [
            {
                "name": v["name"],
                "variant": v["variant"],
                "repetition": v["repetition"],
                "description": loaded.scenario.variants[v["variant"]].description
                if v["variant"] in loaded.scenario.variants
                else "",
                "router_template": (v["lab"].get("router") or {}).get("template"),
                "t0": v["workload"]["t0"],
                "duration_s": v["workload"]["duration"],
                "calls": v["scores"]["calls"],
                "traffic": [traffic_summary(t) for t in v["workload"]["traffic"]],
                "timeline": v["workload"]["timeline"],
                "queues": {"classes": v["workload"]["queue_classes"], "samples": v["workload"]["queues"]},
                "impairment_engine": v["lab"].get("impairment_engine"),
                "agents": v["workload"].get("agents", {}),
            }
            for v in variants
        ],
        "thresholds": [c.as_dict() for c in checks],
        "verdict": {
            "passed": not failed,
            "checks": len(checks),
            "failed": len(failed),
            "first_failure": failed[0].message if failed else None,
        },
    }


def save(result: dict[str, Any], run_dir: Path) -> Path:
    path = run_dir / RESULT
    path.write_text(json.dumps(result, indent=1))
    return path
