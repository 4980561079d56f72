"""The node image of the docker backend: built offline from the host's wheelhouse, it runs this
checkout's code with its dependencies, tc and iptables, and a build that has nothing to do is skipped.

The first build on a machine takes about a minute (base image ~30 s, wheelhouse ~10 s, image ~20 s);
CI builds it beforehand (`make images`), so the session fixture only builds when the image is stale.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from testbed.errors import CapabilityError
from testbed.images import (
    BASE_IMAGE,
    NODE_IMAGE,
    ImageStatus,
    build_images,
    images_status,
    node_image_current,
    node_image_present,
    source_hash,
)
from testbed.images import base as base_step
from testbed.images import node as node_step
from testbed.images.source import project_version
from testbed.lab.backends.docker import client as docker_client
from tests.helpers import REPO, require
from tests.helpers.lab import run_testbed

pytestmark = pytest.mark.docker

TEST_LABEL = "org.voip-testbed.test"
# prints a digest of the files of the testbed package it imports, to compare the image's code with this
# checkout's; the same script runs in a node and on the host
PACKAGE_DIGEST = """
import hashlib, pathlib, testbed
root = pathlib.Path(testbed.__file__).parent
digest = hashlib.sha256()
for path in sorted(root.rglob("*")):
    parts = path.relative_to(root).parts
    if path.is_file() and "__pycache__" not in parts and path.suffix != ".pyc":
        digest.update("/".join(parts).encode() + b"\\0" + hashlib.sha256(path.read_bytes()).digest())
print(digest.hexdigest())
"""


@pytest.fixture(scope="session")
def engine():
    try:
        client = docker_client(timeout=120)
    except CapabilityError as exc:
        require("docker engine", False, str(exc))
    yield client
    leftovers = client.containers.list(all=True, filters={"label": TEST_LABEL})
    for container in leftovers:
        container.remove(force=True)
    assert leftovers == [], "test containers left behind"
    client.close()


@pytest.fixture(scope="session")
def node_image(engine):
    """The node image, current for this checkout: built here when missing or stale."""
    if not node_image_current():
        require("root", os.geteuid() == 0, "building the base image needs root")
        lines: list[str] = []
        try:
            build_images(None, lines.append)
        except Exception:
            print("\n".join(lines[-40:]), file=sys.stderr)
            raise
    return engine.images.get(NODE_IMAGE)


def run_in_node(engine, *command: str) -> str:
    """Run a command in a throwaway node container as the docker backend starts them; its output."""
    output = engine.containers.run(
        NODE_IMAGE,
        list(command),
        network_mode="none",
        cap_add=["NET_ADMIN"],
        init=True,
        remove=True,
        labels={TEST_LABEL: "images"},
    )
    return output.decode()


def test_node_image_is_current_and_labelled(node_image):
    assert node_image_present()
    assert node_image_current()
    labels = node_image.labels
    assert labels["org.voip-testbed.version"] == project_version(REPO)
    assert labels["org.voip-testbed.python"] == "3.11"
    assert labels["org.voip-testbed.base-image"] == BASE_IMAGE
    assert labels["org.voip-testbed.source-hash"] == source_hash(REPO, labels["org.voip-testbed.base-id"])
    assert node_image.attrs["Config"]["Cmd"] == ["sleep", "infinity"]


def test_node_runs_this_checkouts_code_and_dependencies(engine, node_image):
    assert run_in_node(engine, "python3", "-c", "import testbed, aiortc, pesq, pyroute2; print('ok')").strip() == "ok"
    inside = run_in_node(engine, "python3", "-c", PACKAGE_DIGEST)
    here = subprocess.run(
        [sys.executable, "-c", PACKAGE_DIGEST], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert inside.strip() == here.strip(), "the node image holds other code than this checkout: rebuild it"


def test_node_has_tc_iptables_and_libopus(engine, node_image):
    shaped = run_in_node(
        engine, "sh", "-c", "tc qdisc add dev lo root handle 1: htb default 10 && tc qdisc show dev lo"
    )
    assert "qdisc htb 1:" in shaped
    rules = run_in_node(
        engine,
        "sh",
        "-c",
        "iptables -t mangle -A POSTROUTING -p udp -j DSCP --set-dscp 46 && iptables -t mangle -S POSTROUTING",
    )
    assert "--set-dscp 0x2e" in rules
    # libopus0 from Debian: opuslib_next conceals a lost 20 ms frame at 16 kHz (320 samples, 640 bytes)
    concealed = run_in_node(
        engine, "python3", "-c", "import opuslib_next as o; print(len(o.Decoder(16000, 1).decode(b'', 320)))"
    )
    assert concealed.strip() == "640"


def test_cli_build_is_quick_when_current(node_image):
    started = time.monotonic()
    result = run_testbed("images", "build", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "current" in result.stdout + result.stderr
    assert time.monotonic() - started < 20


def test_build_is_offline_and_skipped_when_nothing_changed(engine, node_image):
    """A forced build runs every step without the engine's cache on network none (our base has every
    Debian package; the wheels come from the host), then a second build has nothing to do."""
    lines: list[str] = []
    info = build_images(None, lines.append, force=True)
    assert info.rebuilt and set(info.timings) >= {"wheelhouse", "node"}
    assert f"docker build {NODE_IMAGE} from {BASE_IMAGE} (network none)" in lines
    assert any(line.startswith("wheelhouse: ") and "wheels" in line for line in lines)
    assert node_image_current()

    started = time.monotonic()
    again = build_images(None, lambda line: None)
    assert (again.rebuilt, again.id) == (False, info.id)
    assert time.monotonic() - started < 10
    said: list[str] = []
    build_images(progress=said.append, quiet=True)  # what `make images` runs: silent when current
    assert said == []
    assert images_status() is ImageStatus.CURRENT
    # what the builds leave: one deps stage (the engine's cache for the next build), no old node images
    stages = engine.images.list(filters={"dangling": True, "label": "org.voip-testbed.stage=deps"})
    assert len(stages) <= 1
    nodes = engine.images.list(filters={"label": "org.voip-testbed.stage=node"})
    assert [image.id for image in nodes] == [info.id]


# ------------------------------------------------------------------ missing capabilities (no engine needed)


class _NoImages:
    class images:  # stands in for the SDK's image collection
        @staticmethod
        def get(ref):
            import docker

            raise docker.errors.ImageNotFound(ref)


def test_no_engine_is_a_capability_error_that_says_how(monkeypatch):
    import docker

    def unreachable(**kwargs):
        raise docker.errors.DockerException("Error while fetching server API version: connection refused")

    monkeypatch.setattr(docker, "from_env", unreachable)
    with pytest.raises(CapabilityError, match="provision-docker.sh"):
        build_images(None, lambda line: None)
    assert node_image_present() is False
    assert node_image_current() is False


def test_missing_mmdebstrap_is_a_capability_error_that_says_how(monkeypatch):
    monkeypatch.setattr(node_step, "engine_client", lambda timeout: _NoImages())
    monkeypatch.setattr(base_step.os, "geteuid", lambda: 0)
    real_which = base_step.shutil.which
    monkeypatch.setattr(base_step.shutil, "which", lambda tool: None if tool == "mmdebstrap" else real_which(tool))
    with pytest.raises(CapabilityError, match="apt-get install mmdebstrap.*--base"):
        build_images(None, lambda line: None)


def test_another_python_than_bookworms_is_a_capability_error(monkeypatch):
    monkeypatch.setattr(node_step, "PYTHON_VERSION", "3.12")
    with pytest.raises(CapabilityError, match="Python 3.11 environment.*--base"):
        build_images(None, lambda line: None)
