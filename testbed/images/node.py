"""The node image: ``docker build`` of ``containers/Dockerfile`` in a temporary context holding the
Dockerfile and the wheelhouse, skipped when the image's source-hash label says it is current."""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testbed.errors import CapabilityError
from testbed.images.base import ensure_base, resolve_base
from testbed.images.common import (
    BASE_IMAGE,
    BASE_PYTHON_VERSION,
    BUILD_TIMEOUT_S,
    DEPS_HASH_LABEL,
    LABEL,
    NODE_IMAGE,
    NOTHING_TO_BUILD,
    PYTHON_VERSION,
    SOURCE_HASH_LABEL,
    STAGE_LABEL,
    ImageBuildError,
    ImageInfo,
    Progress,
    engine_client,
    find_image,
    image_info,
    remove_images,
)
from testbed.images.source import project_version, repo_root, snapshot, source_hash
from testbed.images.wheelhouse import build_wheelhouse

LOCK_PATH = Path(tempfile.gettempdir()) / "voip-testbed-images.lock"
# the legacy builder's bookkeeping lines; kept for error messages, not passed on as progress
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the legacy builder colours a step's stderr
BUILD_NOISE = re.compile(r"^( ---> |Removing intermediate container |Successfully built |Step \d+/\d+ : LABEL )")


def _print(line: str) -> None:
    print(line, flush=True)


def _reporter(progress: Progress, quiet: bool) -> Progress:
    if not quiet:
        return progress
    return lambda line: None if line.endswith(NOTHING_TO_BUILD) else progress(line)


def build_images(
    base: str | None = None, progress: Progress | None = None, *, force: bool = False, quiet: bool = False
) -> ImageInfo:
    """Make the node image current: the base (our own when ``base`` is None), the wheelhouse, the image.

    ``base``: an image whose python3 is this Python's version (e.g. ``debian:bookworm-slim`` from a
    registry); None builds and uses ``voip-testbed-base:bookworm``. ``force``: rebuild the wheelhouse
    and the node image without the engine's cache, also when the labels say it is current (the base is
    rebuilt only when missing or its recipe changed; ``docker rmi voip-testbed-base:bookworm`` forces
    that). ``progress`` gets each step's lines (default: printed); ``quiet`` drops the line saying the
    image is current, so a build with nothing to do prints nothing. Raises CapabilityError when
    something the build needs is missing (the message says how to get it) and ImageBuildError when a
    step fails.
    """
    progress = _reporter(progress or _print, quiet)
    root = repo_root()
    if base is None and PYTHON_VERSION != BASE_PYTHON_VERSION:
        raise CapabilityError(
            f"the node image runs Debian bookworm's Python {BASE_PYTHON_VERSION} and installs wheels built by "
            f"this Python ({PYTHON_VERSION}): run testbed from a Python {BASE_PYTHON_VERSION} environment, or "
            f"pass --base an image whose python3 is {PYTHON_VERSION}"
        )
    engine = engine_client(timeout=BUILD_TIMEOUT_S)
    timings: dict[str, float] = {}
    with build_lock(progress):
        base_ref = base or BASE_IMAGE
        base_rebuilt = False
        if base is None:
            base_rebuilt = ensure_base(engine, root, progress, timings)
        base_image = resolve_base(engine, base_ref, progress)
        digest = source_hash(root, base_image.id)

        existing = find_image(engine, NODE_IMAGE)
        if existing is not None and not force and (existing.labels or {}).get(SOURCE_HASH_LABEL) == digest:
            progress(f"node image {NODE_IMAGE} is current (source hash {digest[:12]}); {NOTHING_TO_BUILD}")
            return image_info(existing, base_ref, base_image.id, False, base_rebuilt, timings)

        with tempfile.TemporaryDirectory(prefix="voip-testbed-image.") as tmp:
            # a copy of the checkout: the wheel is built from it (so setuptools' build/ and egg-info never
            # land in the checkout), and the image's label is its hash, whatever changes meanwhile
            source = snapshot(root, Path(tmp) / "source")
            digest = source_hash(source, base_image.id)
            context = Path(tmp) / "context"
            started = time.monotonic()
            wheels_hash = build_wheelhouse(source, Path(tmp), context / "wheelhouse", progress)
            # names the deps stage the engine keeps as build cache: these wheels on this base
            deps_hash = hashlib.sha256(f"{wheels_hash} {base_image.id}".encode()).hexdigest()
            timings["wheelhouse"] = time.monotonic() - started
            shutil.copy2(source / "containers" / "Dockerfile", context / "Dockerfile")
            started = time.monotonic()
            image = docker_build(
                engine,
                context,
                base_ref,
                base_image.id,
                digest,
                deps_hash,
                offline=base is None,
                nocache=force,
                progress=progress,
                root=source,
            )
            timings["node"] = time.monotonic() - started
        remove_stale(engine, existing, image, deps_hash, progress)
        info = image_info(image, base_ref, base_image.id, True, base_rebuilt, timings)
        progress(f"node image {info}")
        return info


def docker_build(
    engine: Any,
    context: Path,
    base_ref: str,
    base_id: str,
    digest: str,
    deps_hash: str,
    *,
    offline: bool,
    nocache: bool,
    progress: Progress,
    root: Path,
) -> Any:
    import docker

    version = project_version(root)
    labels = {
        LABEL + "version": version,
        SOURCE_HASH_LABEL: digest,
        LABEL + "base-image": base_ref,
        LABEL + "base-id": base_id,
        LABEL + "python": PYTHON_VERSION,
        DEPS_HASH_LABEL: deps_hash,
        "org.opencontainers.image.title": "voip-testbed-node",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # our base has every Debian package: no network, which also proves the build is offline; a public
    # base may need apt, which a build container on the host's network can reach with any engine setup
    network = "none" if offline else "host"
    progress(f"docker build {NODE_IMAGE} from {base_ref} (network {network})")
    output: list[str] = []
    image_id = None
    try:
        stream = engine.api.build(
            path=str(context),
            tag=NODE_IMAGE,
            rm=True,
            forcerm=True,
            pull=False,
            nocache=nocache,
            decode=True,
            network_mode=network,
            labels=labels,
            buildargs={"BASE_IMAGE": base_ref, "PYTHON_VERSION": PYTHON_VERSION, "DEPS_HASH": deps_hash},
        )
        for chunk in stream:
            if "error" in chunk or "errorDetail" in chunk:
                message = chunk.get("error") or chunk["errorDetail"].get("message", "")
                raise ImageBuildError(
                    f"docker build of {NODE_IMAGE} failed: {message.strip()}\n" + "\n".join(output[-12:])
                )
            for line in ANSI.sub("", str(chunk.get("stream", ""))).splitlines():
                if line.strip():
                    output.append(line.rstrip())
                    if not BUILD_NOISE.match(line):
                        progress(shorten(line.rstrip()))
            if chunk.get("status") and not chunk.get("progressDetail"):
                progress(str(chunk["status"]))
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"docker build of {NODE_IMAGE} failed: {exc.explanation or exc}") from None
    try:
        return engine.images.get(NODE_IMAGE)
    except docker.errors.ImageNotFound:
        raise ImageBuildError(
            f"docker build reported no error but there is no {NODE_IMAGE} "
            f"(last image {image_id}):\n" + "\n".join(output[-12:])
        ) from None


def remove_stale(engine: Any, old: Any, new: Any, deps_hash: str, progress: Progress) -> None:
    """Remove what earlier builds left: the replaced node image, and every deps stage but the newest one
    of this build's wheels and base, which stays as the engine's build cache for the next build."""
    stale = []
    if old is not None and old.id != new.id:
        stale.append(old.id)
    stages = engine.images.list(filters={"dangling": True, "label": f"{STAGE_LABEL}=deps"})
    current = [image for image in stages if (image.labels or {}).get(DEPS_HASH_LABEL) == deps_hash]
    keep = max(current, key=lambda image: str(image.attrs.get("Created", "")), default=None)
    stale.extend(image.id for image in stages if keep is None or image.id != keep.id)
    remove_images(engine, stale, progress)


def shorten(line: str, width: int = 110) -> str:
    """A build step's instruction on one readable line (RUN steps are long shell scripts)."""
    line = re.sub(r"\s{2,}", " ", line)
    return line if len(line) <= width or not line.startswith("Step ") else line[: width - 3] + "..."


@contextmanager
def build_lock(progress: Progress) -> Iterator[None]:
    """One build at a time on this host (two test sessions, or a user and CI)."""
    with open(LOCK_PATH, "a") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"another image build holds {LOCK_PATH}; waiting for it")
            fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)
