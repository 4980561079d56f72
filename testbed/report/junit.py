"""JUnit XML for CI: one test suite per variant, one test case per threshold check, failures naming
what fell short. Without thresholds each call is a passing case that reports its scores."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from testbed.report.figures import ef_on_wire, heard_by_browser, listener_name
from testbed.results import CheckResult, RunResult


def write(result: RunResult, path: Path) -> Path:
    root = ElementTree.Element("testsuites", name=f"voip-testbed {result.scenario.name}")
    by_variant: dict[str, list[CheckResult]] = {}
    for check in result.thresholds:
        by_variant.setdefault(check.variant, []).append(check)
    for variant in result.variants:
        checks = by_variant.get(variant.variant, [])
        suite = ElementTree.SubElement(
            root,
            "testsuite",
            name=f"{result.scenario.name}.{variant.name}",
            tests=str(len(checks) or len(variant.calls)),
            failures=str(sum(not c.passed for c in checks)),
        )
        if checks:
            for check in checks:
                case = ElementTree.SubElement(
                    suite,
                    "testcase",
                    classname=f"{result.scenario.name}.{variant.name}",
                    name=f"{check.call} {check.direction}: {check.rule}",
                )
                if not check.passed:
                    failure = ElementTree.SubElement(case, "failure", message=check.message)
                    failure.text = check.message
        else:  # no thresholds, no verdict: each call is a passing case that reports what happened
            for call in variant.calls:
                case = ElementTree.SubElement(
                    suite, "testcase", classname=f"{result.scenario.name}.{variant.name}", name=call.id
                )
                lines = [f"{call.id}: {call.outcome} {call.reason}".strip()]
                lines += [
                    f"{d}: MOS E-model {s.mos_emodel}, PESQ {s.mos_pesq}"
                    + (f" (heard by {listener_name(s.listener)})" if heard_by_browser(s) else "")
                    + f", EF on wire {ef_on_wire(s)}"
                    for d, s in call.scored().items()
                ]
                ElementTree.SubElement(case, "system-out").text = "\n".join(lines)
    ElementTree.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ElementTree.ElementTree(root).write(path, encoding="unicode", xml_declaration=True)
    return path
