"""The base image: our own Debian bookworm (``containers/build-base.sh``, mmdebstrap + ``docker import``),
rebuilt when that script changes; or a given image, pulled when missing."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from testbed.errors import CapabilityError
from testbed.images.common import (
    BASE_IMAGE,
    RECIPE_LABEL,
    ImageBuildError,
    Progress,
    find_image,
    remove_images,
    stream,
)


def ensure_base(engine: Any, root: Path, progress: Progress, timings: dict[str, float]) -> bool:
    script = root / "containers" / "build-base.sh"
    recipe = hashlib.sha256(script.read_bytes()).hexdigest()[:16]
    image = find_image(engine, BASE_IMAGE)
    labels = (image.labels or {}) if image is not None else {}
    if image is not None and labels.get(RECIPE_LABEL) == recipe:
        return False
    why = "missing" if image is None else "out of date (containers/build-base.sh changed)"
    if os.geteuid() != 0:
        raise CapabilityError(
            f"the base image {BASE_IMAGE} is {why} and building it needs root: "
            "run as root (sudo), or pass --base IMAGE (e.g. debian:bookworm-slim from a registry)"
        )
    for tool, package in (("mmdebstrap", "mmdebstrap"), ("docker", "docker.io")):
        if shutil.which(tool) is None:
            raise CapabilityError(
                f"the base image {BASE_IMAGE} is {why} and building it needs {tool}: apt-get install {package} "
                "(or sudo containers/provision-docker.sh), or pass --base IMAGE (e.g. debian:bookworm-slim "
                "from a registry)"
            )
    progress(f"base image {BASE_IMAGE} is {why}: building it with {script.relative_to(root)} (about 30-60 s)")
    started = time.monotonic()
    lines = stream(["bash", str(script), BASE_IMAGE], progress)
    if lines.returncode != 0:
        tail = "\n".join(lines.output[-12:])
        if lines.returncode == 3:
            raise CapabilityError(lines.output[-1] if lines.output else f"{script.name} failed")
        raise ImageBuildError(f"building the base image {BASE_IMAGE} failed (exit {lines.returncode}):\n{tail}")
    timings["base"] = time.monotonic() - started
    new = find_image(engine, BASE_IMAGE)
    if image is not None and new is not None and new.id != image.id:
        remove_images(engine, [image.id], progress)  # the replaced base, unless a node image still uses it
    return True


def resolve_base(engine: Any, ref: str, progress: Progress) -> Any:
    import docker

    image = find_image(engine, ref)
    if image is not None:
        return image
    progress(f"base image {ref} is not here: pulling it")
    try:
        return engine.images.pull(ref)
    except docker.errors.APIError as exc:
        raise CapabilityError(
            f"base image {ref} is not here and cannot be pulled ({exc.explanation or exc}): pull or load it "
            "into the engine, or build without --base to make a local Debian base with mmdebstrap"
        ) from None
