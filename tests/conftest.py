"""Fixtures for every test group. Groups: tests/unit (pure logic), tests/lab (real namespaces, root),
tests/docker (the Docker backend), tests/netem (sch_netem, natively or in the stock-kernel VM). Shared
helpers live in tests/helpers; in CI (CI=true) a missing capability that CI provides is a failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from testbed import scratch
from testbed.lab.registry import Registry
from tests.helpers import require
from tests.helpers.lab import HostState, browser_processes, turn_processes


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/lab/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.lab)


@pytest.fixture
def root_required():
    require("root", os.geteuid() == 0, "lab tests build network namespaces")


@pytest.fixture
def registry(tmp_path, monkeypatch) -> Registry:
    """A private registry and scratch root, also for the `testbed` subprocesses the test starts. The
    scratch root is short: a browser puts a Unix socket (107 bytes of path at most) under it."""
    root = tmp_path / "registry"
    monkeypatch.setenv("TESTBED_REGISTRY", str(root))
    monkeypatch.setattr("testbed.lab.registry.DEFAULT_ROOT", root)
    scratch_root = Path(tempfile.mkdtemp(prefix="vtbs-"))
    monkeypatch.setenv("TESTBED_SCRATCH", str(scratch_root))
    yield Registry(root)
    shutil.rmtree(scratch_root, ignore_errors=True)


@pytest.fixture
def no_leftovers(registry):
    """Assert the host is as it was and the registry is empty when the test ends. Namespaces count when
    they belong to a run this test's registry started (other processes may build labs meanwhile)."""
    before = HostState.now()
    browsers_before = set(browser_processes())
    turns_before = set(turn_processes(registry.root))
    yield
    after = HostState.now()
    assert set(browser_processes()) - browsers_before == set(), "browser processes left behind"
    assert set(turn_processes(registry.root)) - turns_before == set(), "TURN servers (coturn) left behind"
    files = registry.root / "files"
    assert not files.exists() or list(files.iterdir()) == [], "run files (certificates, keys) left behind"
    assert list(scratch.root().iterdir()) == [], "scratch directories (browser profiles) left behind"
    ours = {
        name
        for name in after.namespaces - before.namespaces
        if any(name.startswith(f"vtb-{run_id}-") for run_id in registry.history())
    }
    assert ours == set(), "namespaces left behind"
    assert after.root_links - before.root_links == set(), "links left in the root namespace"
    assert registry.runs() == [], "registry entries left behind"


# ---------------------------------------------------------------- where CI's time goes

_SECONDS_BY_FILE: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Sum each test file's setup, call and teardown time (the summary below)."""
    path = report.nodeid.split("::", 1)[0]
    _SECONDS_BY_FILE[path] = _SECONDS_BY_FILE.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Seconds per test group and file, slowest first: the figures CI's time budget is kept with."""
    if not _SECONDS_BY_FILE:
        return
    groups: dict[str, float] = {}
    for path, seconds in _SECONDS_BY_FILE.items():
        group = path.split("/")[1] if path.startswith("tests/") and path.count("/") > 1 else path
        groups[group] = groups.get(group, 0.0) + seconds
    terminalreporter.section("time per test group and file")
    terminalreporter.write_line("  ".join(f"{g} {s:.0f} s" for g, s in sorted(groups.items(), key=lambda i: -i[1])))
    for path, seconds in sorted(_SECONDS_BY_FILE.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{seconds:8.1f} s  {path}")
