"""Scenario files: the user's whole description of an experiment, loaded and validated."""

from testbed.scenario.load import LoadedScenario, load_scenario, load_template
from testbed.scenario.model import Scenario

__all__ = ["LoadedScenario", "Scenario", "load_scenario", "load_template"]
