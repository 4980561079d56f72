"""Docker tests build labs of containers as root, with the lab tests' fixtures (root conftest)."""

import pytest


@pytest.fixture(autouse=True)
def _root(root_required: None) -> None:
    """Every docker test needs root."""
