"""Exit codes: one enum for the CLI and the child processes; every error type carries its code."""

from __future__ import annotations

from testbed.errors import (
    CapabilityError,
    ExitCode,
    InputError,
    Interrupted,
    LabError,
    ScenarioError,
    TestbedError,
)
from testbed.lab.engine.nfqueue import NfQueueError
from testbed.workload.traffic import TrafficError


def test_the_documented_codes():
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 4, 130]
    assert ExitCode.CHECK_FAILED is ExitCode.FAILED


def test_each_error_carries_its_code():
    assert InputError("x").exit_code == ExitCode.BAD_INPUT == 2
    assert ScenarioError(["a", "b"]).exit_code == ExitCode.BAD_INPUT
    assert CapabilityError("x").exit_code == ExitCode.MISSING_CAPABILITY == 3
    assert LabError("x").exit_code == TestbedError("x").exit_code == ExitCode.TESTBED_FAILED == 4
    assert Interrupted().exit_code == ExitCode.INTERRUPTED == 130


def test_child_process_errors_are_testbed_errors():
    assert issubclass(TrafficError, TestbedError) and TrafficError("x").exit_code == 4
    refused = NfQueueError(1, "binding NFQUEUE 3 failed: EPERM")
    assert isinstance(refused, TestbedError) and isinstance(refused, OSError)
    assert refused.errno == 1 and str(refused) == "binding NFQUEUE 3 failed: EPERM"
