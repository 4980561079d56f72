"""The files a sweep needs beside its scenario on another machine: the router templates it names that are
not shipped with the testbed (a pod, a CI runner gets the shipped ones from the package)."""

from __future__ import annotations

from testbed.scenario.load import BUILTIN_SCENARIOS, LoadedScenario, find_template


def scenario_files(loaded: LoadedScenario) -> dict[str, str]:
    """Router template file name -> its text, for every template the variants and the timeline use that
    the scenario's own directory provides."""
    names = {template for template in [v.router.template for v in map(loaded.variant, loaded.variant_names)]}
    names |= {event.template for event in loaded.scenario.timeline if event.template}
    files = {}
    for name in sorted(names):
        path = find_template(name, loaded.path)
        if path is not None and not path.resolve().is_relative_to(BUILTIN_SCENARIOS.resolve()):
            files[path.name] = path.read_text()
    return files
