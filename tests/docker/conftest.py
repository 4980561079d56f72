"""Docker tests build labs of containers as root, with the lab tests' fixtures (root conftest)."""

import pytest

from testbed.lab.backends.docker import client
from tests.helpers import require


@pytest.fixture(autouse=True)
def _root(root_required: None) -> None:
    """Every docker test needs root."""


@pytest.fixture(scope="module")
def engine():
    """A Docker client, with the node image present (CI provides both: missing there is a failure)."""
    try:
        docker_client = client()
    except Exception as exc:
        require("docker engine", False, str(exc))
    from testbed.images import NODE_IMAGE, node_image_present

    require("node image", node_image_present(), f"build {NODE_IMAGE} with `testbed images build`")
    return docker_client
