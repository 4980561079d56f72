"""What tests share besides fixtures: paths, the CI rule for missing capabilities, the CLI in-process,
lab inspection. Fixtures stay in conftest.py files; test modules never import each other."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(capability: str, available: bool, why: str) -> None:
    """Skip when a capability is missing on a developer's machine; fail when CI should have provided it."""
    if available:
        return
    message = f"{capability} missing: {why}"
    if IN_CI:
        pytest.fail(message + " (CI provides it, so this is a failure)")
    pytest.skip(message)
