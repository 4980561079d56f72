"""The workload of one variant: calls, cross traffic, packet taps and the timeline, driven over a lab."""

from testbed.workload.workload import Workload, scenario_clips

__all__ = ["Workload", "scenario_clips"]
