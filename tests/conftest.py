"""Shared fixtures. Groups: tests/unit (pure logic), tests/lab (real namespaces, root).

In CI (CI=true) a missing capability that CI provides is a failure, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/lab/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.lab)


def require(capability: str, available: bool, why: str) -> None:
    """Skip when a capability is missing on a developer's machine; fail when CI should have provided it."""
    if available:
        return
    message = f"{capability} missing: {why}"
    if IN_CI:
        pytest.fail(message + " (CI provides it, so this is a failure)")
    pytest.skip(message)
