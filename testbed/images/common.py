"""What the image build steps share: names, labels, the result type, and small helpers."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from testbed.errors import TestbedError
from testbed.lab.backends import docker as docker_backend
from testbed.proc import stop_process

NODE_IMAGE = docker_backend.NODE_IMAGE  # what the docker backend runs
BASE_IMAGE = "voip-testbed-base:bookworm"
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
BASE_PYTHON_VERSION = "3.11"  # python3 of Debian bookworm, the suite of our base image
PROJECT_DIST = "voip-testbed"

LABEL = "org.voip-testbed."
SOURCE_HASH_LABEL = LABEL + "source-hash"
RECIPE_LABEL = LABEL + "base-recipe"
STAGE_LABEL = LABEL + "stage"
DEPS_HASH_LABEL = LABEL + "deps-hash"

BUILD_TIMEOUT_S = 1800  # the engine's answer to one request; a silent build step may take minutes

Progress = Callable[[str], None]
NOTHING_TO_BUILD = "nothing to build"


class ImageBuildError(TestbedError):
    """Building an image failed; the message holds the failing step's last lines."""

    exit_code = 4


@dataclass(frozen=True)
class ImageInfo:
    """The node image as it is after ``build_images``."""

    name: str
    id: str
    size_bytes: int
    base: str
    base_id: str
    version: str
    source_hash: str
    rebuilt: bool  # False: the existing image was current and kept
    base_rebuilt: bool
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step that ran: base, wheelhouse, node

    def __str__(self) -> str:
        state = "built" if self.rebuilt else "up to date"
        steps = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in self.timings.items())
        return (
            f"{self.name} {self.id[7:19]} ({state}{'; ' + steps if steps else ''}): "
            f"{self.size_bytes / 1e6:.0f} MB, voip-testbed {self.version}, base {self.base}"
        )


def engine_client(timeout: int) -> Any:
    """The one Docker client factory (the docker backend's), with the engine's answer as the build's timeout."""
    return docker_backend.client(timeout=timeout)


def find_image(engine: Any, ref: str) -> Any:
    import docker

    try:
        return engine.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def image_info(
    image: Any, base: str, base_id: str, rebuilt: bool, base_rebuilt: bool, timings: dict[str, float]
) -> ImageInfo:
    labels = image.labels or {}
    return ImageInfo(
        name=NODE_IMAGE,
        id=image.id,
        size_bytes=int(image.attrs.get("Size", 0)),
        base=base,
        base_id=base_id,
        version=labels.get(LABEL + "version", "?"),
        source_hash=labels.get(SOURCE_HASH_LABEL, ""),
        rebuilt=rebuilt,
        base_rebuilt=base_rebuilt,
        timings=dict(timings),
    )


def remove_images(engine: Any, image_ids: list[str], progress: Progress) -> None:
    import docker

    for image_id in image_ids:
        try:
            engine.images.remove(image_id)
            progress(f"removed stale image {image_id[7:19]}")
        except docker.errors.APIError:
            pass  # in use by a container (e.g. a kept lab) or by a child image: it goes with a later build


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Streamed:
    returncode: int
    output: list[str]


def stream(argv: list[str], progress: Progress) -> Streamed:
    """Run a command, passing each output line to ``progress`` as it comes."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    output: list[str] = []
    assert process.stdout is not None
    try:
        for line in process.stdout:
            line = line.rstrip()
            if line:
                output.append(line)
                progress(line)
    finally:
        stop_process(process)  # interrupted while reading: do not leave the build running
    return Streamed(process.returncode, output)
