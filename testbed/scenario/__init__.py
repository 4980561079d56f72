"""Scenario files: the user's whole description of an experiment, loaded and validated.

The loader is imported on first use: node processes that need only the models (the impairment engine
reads an ``Impairment``) start without YAML parsing, addressing and the template search.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from testbed.scenario.load import LoadedScenario, load_scenario, load_template
    from testbed.scenario.model import Scenario

__all__ = ["LoadedScenario", "Scenario", "load_scenario", "load_template"]


def __getattr__(name: str) -> Any:
    if name in ("LoadedScenario", "load_scenario", "load_template"):
        from testbed.scenario import load

        return getattr(load, name)
    if name == "Scenario":
        from testbed.scenario.model import Scenario

        return Scenario
    raise AttributeError(f"module 'testbed.scenario' has no attribute {name!r}")
