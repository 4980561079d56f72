"""The files a sweep needs beside its scenario on another machine: the router templates its trials name
that are not shipped with the testbed (a pod, a CI runner gets the shipped ones from the package)."""

from __future__ import annotations

from testbed.scenario.load import BUILTIN_SCENARIOS, LoadedScenario, find_template


def scenario_files(scenarios: list[LoadedScenario]) -> dict[str, str]:
    """Router template file name -> its text, for every template the scenarios' variants and timelines use
    (every trial's: a sweep may name templates, ``variants.x.router.template: [a, b]``) that the scenario's
    own directory provides."""
    files = {}
    for loaded in scenarios:
        names = {loaded.variant(name).router.template for name in loaded.variant_names}
        names |= {event.template for event in loaded.scenario.timeline if event.template}
        for name in sorted(names):
            path = find_template(name, loaded.path)
            if path is not None and not path.resolve().is_relative_to(BUILTIN_SCENARIOS.resolve()):
                files[path.name] = path.read_text()
    return files
