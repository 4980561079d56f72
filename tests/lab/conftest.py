"""Lab tests build real namespaces as root; each gets a private registry (root conftest) and checks
that nothing is left behind (``no_leftovers``)."""

import pytest


@pytest.fixture(autouse=True)
def _root(root_required: None) -> None:
    """Every lab test needs root."""
