"""Node images for the Docker backend, built without a registry and without network in the build.

Three steps, each skipped when its result is current:

1. The base image ``voip-testbed-base:bookworm`` (unless a base is given): ``containers/build-base.sh``
   makes a Debian bookworm root file system with mmdebstrap from a Debian mirror and imports it with
   ``docker import``. It is rebuilt when that script changes (label ``org.voip-testbed.base-recipe``).
2. The wheelhouse: ``pip wheel`` of the project and its dependencies on the host (PyPI is reachable from
   the host, not needed by the build), pinned to the versions installed in this environment, so the
   nodes run the same libraries as the host that scores their output.
3. ``docker build`` of ``containers/Dockerfile`` in a temporary context holding the Dockerfile and the
   wheelhouse; on our own base with ``network_mode=none``, which proves the build is offline.

The node image's label ``org.voip-testbed.source-hash`` is a hash of everything that goes into it (the
project's files, the Dockerfile, the base image's id, the pinned versions, the Python version); a build
whose hash matches the existing image is skipped before any wheel is built, and ``node_image_current``
tells whether the image still matches this checkout.

Run as ``testbed images build [--base IMAGE]`` or ``python -m testbed.images build [--base IMAGE] [--force]``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from testbed.errors import CapabilityError, TestbedError

NODE_IMAGE = "voip-testbed-node:latest"
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
LOCK_PATH = Path(tempfile.gettempdir()) / "voip-testbed-images.lock"
# what goes into the project wheel, relative to the repository root
SOURCE_FILES = ("pyproject.toml", "README.md", "setup.cfg", "setup.py", "MANIFEST.in")
SOURCE_PACKAGE = "testbed"
HOW_TO_GET_DOCKER = (
    "install and start one: sudo containers/provision-docker.sh (Debian's docker.io), or systemctl start docker"
)

Progress = Callable[[str], None]
NOTHING_TO_BUILD = "nothing to build"
# the legacy builder's bookkeeping lines; kept for error messages, not passed on as progress
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the legacy builder colours a step's stderr
BUILD_NOISE = re.compile(r"^( ---> |Removing intermediate container |Successfully built |Step \d+/\d+ : LABEL )")


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


# ------------------------------------------------------------------ public API


def node_image_present() -> bool:
    """Whether the engine has the node image (False also when no engine answers)."""
    try:
        engine = _engine(timeout=10)
    except CapabilityError:
        return False
    return _image(engine, NODE_IMAGE) is not None


def node_image_current() -> bool:
    """Whether the node image holds this checkout's code and pinned dependencies, on the base it was
    built from as that base is now (False when it is missing or no engine answers)."""
    try:
        engine = _engine(timeout=10)
        root = repo_root()
    except CapabilityError:
        return False
    image = _image(engine, NODE_IMAGE)
    if image is None:
        return False
    labels = image.labels or {}
    base = _image(engine, labels.get(LABEL + "base-image", BASE_IMAGE))
    if base is None:
        return False
    return labels.get(SOURCE_HASH_LABEL) == source_hash(root, base.id)


def build_images(base: str | None, progress: Progress, *, force: bool = False) -> ImageInfo:
    """Make the node image current: the base (our own when ``base`` is None), the wheelhouse, the image.

    ``base``: an image whose python3 is this Python's version (e.g. ``debian:bookworm-slim`` from a
    registry); None builds and uses ``voip-testbed-base:bookworm``. ``force``: rebuild the wheelhouse
    and the node image without the engine's cache, also when the labels say it is current (the base is
    rebuilt only when missing or its recipe changed; ``docker rmi voip-testbed-base:bookworm`` forces
    that). Raises CapabilityError when something the build needs is missing (the message says how to
    get it) and ImageBuildError when a step fails.
    """
    root = repo_root()
    if base is None and PYTHON_VERSION != BASE_PYTHON_VERSION:
        raise CapabilityError(
            f"the node image runs Debian bookworm's Python {BASE_PYTHON_VERSION} and installs wheels built by "
            f"this Python ({PYTHON_VERSION}): run testbed from a Python {BASE_PYTHON_VERSION} environment, or "
            f"pass --base an image whose python3 is {PYTHON_VERSION}"
        )
    engine = _engine(timeout=BUILD_TIMEOUT_S)
    timings: dict[str, float] = {}
    with _lock(progress):
        base_ref = base or BASE_IMAGE
        base_rebuilt = False
        if base is None:
            base_rebuilt = _ensure_base(engine, root, progress, timings)
        base_image = _resolve_base(engine, base_ref, progress)
        digest = source_hash(root, base_image.id)

        existing = _image(engine, NODE_IMAGE)
        if existing is not None and not force and (existing.labels or {}).get(SOURCE_HASH_LABEL) == digest:
            progress(f"node image {NODE_IMAGE} is current (source hash {digest[:12]}); {NOTHING_TO_BUILD}")
            return _info(existing, base_ref, base_image.id, False, base_rebuilt, timings)

        with tempfile.TemporaryDirectory(prefix="voip-testbed-image.") as tmp:
            # a copy of the checkout: the wheel is built from it (so setuptools' build/ and egg-info never
            # land in the checkout), and the image's label is its hash, whatever changes meanwhile
            source = _snapshot(root, Path(tmp) / "source")
            digest = source_hash(source, base_image.id)
            context = Path(tmp) / "context"
            started = time.monotonic()
            wheels_hash = _wheelhouse(source, Path(tmp), context / "wheelhouse", progress)
            # names the deps stage the engine keeps as build cache: these wheels on this base
            deps_hash = hashlib.sha256(f"{wheels_hash} {base_image.id}".encode()).hexdigest()
            timings["wheelhouse"] = time.monotonic() - started
            shutil.copy2(source / "containers" / "Dockerfile", context / "Dockerfile")
            started = time.monotonic()
            image = _docker_build(
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
        _remove_stale(engine, existing, image, deps_hash, progress)
        info = _info(image, base_ref, base_image.id, True, base_rebuilt, timings)
        progress(f"node image {info}")
        return info


def repo_root() -> Path:
    """The project checkout this package runs from; image builds need its containers/ and pyproject.toml."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "containers" / "Dockerfile").is_file() or not (root / "pyproject.toml").is_file():
        raise CapabilityError(
            f"building images needs the project's source checkout (containers/Dockerfile, pyproject.toml), "
            f"found none at {root}: run testbed from a clone installed with `pip install -e .`"
        )
    return root


def source_hash(root: Path, base_id: str) -> str:
    """A hash of everything the node image is made of, known before anything is built."""
    digest = hashlib.sha256(b"voip-testbed node image, recipe 1\n")
    for part in (f"python {PYTHON_VERSION}", f"base {base_id}", *pinned_requirements()):
        digest.update(part.encode() + b"\n")
    for path in [root / "containers" / "Dockerfile", *_source_paths(root)]:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def pinned_requirements() -> list[str]:
    """``name==version`` for the project's runtime dependencies (transitively) as installed here."""
    try:
        queue = [PROJECT_DIST]
        seen: dict[str, str] = {}
        while queue:
            name = _normalize(queue.pop())
            if name in seen:
                continue
            try:
                dist = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                continue
            seen[name] = dist.version
            for requirement in dist.requires or []:
                if re.search(r"extra\s*==", requirement):
                    continue
                match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
                if match:
                    queue.append(match.group(1))
    except Exception:  # metadata of a broken environment: build unpinned rather than not at all
        return []
    seen.pop(_normalize(PROJECT_DIST), None)
    return sorted(f"{name}=={version}" for name, version in seen.items())


# ------------------------------------------------------------------ steps


def _ensure_base(engine: Any, root: Path, progress: Progress, timings: dict[str, float]) -> bool:
    script = root / "containers" / "build-base.sh"
    recipe = hashlib.sha256(script.read_bytes()).hexdigest()[:16]
    image = _image(engine, BASE_IMAGE)
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
    lines = _stream(["bash", str(script), BASE_IMAGE], progress)
    if lines.returncode != 0:
        tail = "\n".join(lines.output[-12:])
        if lines.returncode == 3:
            raise CapabilityError(lines.output[-1] if lines.output else f"{script.name} failed")
        raise ImageBuildError(f"building the base image {BASE_IMAGE} failed (exit {lines.returncode}):\n{tail}")
    timings["base"] = time.monotonic() - started
    new = _image(engine, BASE_IMAGE)
    if image is not None and new is not None and new.id != image.id:
        _remove_images(engine, [image.id], progress)  # the replaced base, unless a node image still uses it
    return True


def _resolve_base(engine: Any, ref: str, progress: Progress) -> Any:
    import docker

    image = _image(engine, ref)
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


def _snapshot(root: Path, dest: Path) -> Path:
    """Copy what the image is made of from the checkout: the project's files and the Dockerfile."""
    for path in [root / "containers" / "Dockerfile", *_source_paths(root)]:
        target = dest / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dest


def _wheelhouse(source: Path, tmp: Path, wheelhouse: Path, progress: Progress) -> str:
    """Wheels of the project (from ``source``, a snapshot) and its dependencies, split into deps/ and
    project/; returns a hash of the dependencies' wheels."""
    pins = pinned_requirements()
    constraints = tmp / "constraints.txt"
    constraints.write_text("".join(f"{pin}\n" for pin in pins))
    built = tmp / "wheels"
    progress(f"wheelhouse: pip wheel of the project and its dependencies ({len(pins)} pinned to this environment)")
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        "--wheel-dir",
        str(built),
        "--constraint",
        str(constraints),
        str(source),
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if line.strip() and not line.startswith("WARNING: Location")
        ]
        if "No module named pip" in result.stderr:
            raise CapabilityError(
                f"{sys.executable} has no pip; the wheelhouse is built with it: {sys.executable} -m ensurepip"
            )
        raise ImageBuildError(
            "building the wheelhouse failed (pip wheel; dependencies come from PyPI):\n" + "\n".join(lines[-12:])
        )
    deps, project = wheelhouse / "deps", wheelhouse / "project"
    deps.mkdir(parents=True)
    project.mkdir(parents=True)
    wheels = sorted(built.glob("*.whl"))
    own = _normalize(PROJECT_DIST).replace("-", "_") + "-"
    if not any(wheel.name.startswith(own) for wheel in wheels):
        raise ImageBuildError(f"pip wheel made no {PROJECT_DIST} wheel in {built}")
    deps_digest = hashlib.sha256()
    for wheel in wheels:
        if wheel.name.startswith(own):
            shutil.move(wheel, project / wheel.name)
        else:
            shutil.move(wheel, deps / wheel.name)
            deps_digest.update(wheel.name.encode() + hashlib.sha256((deps / wheel.name).read_bytes()).digest())
    size = sum(wheel.stat().st_size for wheel in wheelhouse.rglob("*.whl"))
    progress(f"wheelhouse: {len(wheels)} wheels, {size / 1e6:.0f} MB")
    return deps_digest.hexdigest()


def _docker_build(
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

    version = _project_version(root)
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
                        progress(_shorten(line.rstrip()))
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


def _remove_stale(engine: Any, old: Any, new: Any, deps_hash: str, progress: Progress) -> None:
    """Remove what earlier builds left: the replaced node image, and every deps stage but the newest one
    of this build's wheels and base, which stays as the engine's build cache for the next build."""
    stale = []
    if old is not None and old.id != new.id:
        stale.append(old.id)
    stages = engine.images.list(filters={"dangling": True, "label": f"{STAGE_LABEL}=deps"})
    current = [image for image in stages if (image.labels or {}).get(DEPS_HASH_LABEL) == deps_hash]
    keep = max(current, key=lambda image: str(image.attrs.get("Created", "")), default=None)
    stale.extend(image.id for image in stages if keep is None or image.id != keep.id)
    _remove_images(engine, stale, progress)


def _remove_images(engine: Any, image_ids: list[str], progress: Progress) -> None:
    import docker

    for image_id in image_ids:
        try:
            engine.images.remove(image_id)
            progress(f"removed stale image {image_id[7:19]}")
        except docker.errors.APIError:
            pass  # in use by a container (e.g. a kept lab) or by a child image: it goes with a later build


# ------------------------------------------------------------------ helpers


def _engine(timeout: int) -> Any:
    try:
        import docker
    except ImportError:
        raise CapabilityError("the docker Python package is missing: pip install 'docker>=7'") from None
    try:
        engine = docker.from_env(timeout=timeout)
        engine.ping()
        return engine
    except Exception as exc:  # DockerException, requests' errors, PermissionError: all mean no usable engine
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        if "Permission denied" in reason:
            raise CapabilityError(
                f"no access to the Docker engine ({reason}): run as root (sudo) or join the docker group"
            ) from None
        raise CapabilityError(f"no Docker engine answers ({reason}): {HOW_TO_GET_DOCKER}") from None


def _image(engine: Any, ref: str) -> Any:
    import docker

    try:
        return engine.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def _info(
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


def _source_paths(root: Path) -> list[Path]:
    paths = [root / name for name in SOURCE_FILES if (root / name).is_file()]
    for path in sorted((root / SOURCE_PACKAGE).rglob("*")):
        relative = path.relative_to(root).parts
        if (
            path.is_file()
            and "__pycache__" not in relative
            and path.suffix not in (".pyc", ".pyo")
            and not any(part.endswith(".egg-info") for part in relative)
        ):
            paths.append(path)
    return paths


def _project_version(root: Path) -> str:
    with open(root / "pyproject.toml", "rb") as file:
        return str(tomllib.load(file).get("project", {}).get("version", "?"))


def _shorten(line: str, width: int = 110) -> str:
    """A build step's instruction on one readable line (RUN steps are long shell scripts)."""
    line = re.sub(r"\s{2,}", " ", line)
    return line if len(line) <= width or not line.startswith("Step ") else line[: width - 3] + "..."


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class _Streamed:
    returncode: int
    output: list[str]


def _stream(argv: list[str], progress: Progress) -> _Streamed:
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
        if process.poll() is None:  # interrupted while reading: do not leave the build running
            process.terminate()
        process.wait()
    return _Streamed(process.returncode, output)


@contextmanager
def _lock(progress: Progress) -> Iterator[None]:
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


# ------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    """``python -m testbed.images build [--base IMAGE] [--force]`` | ``status``; exit codes as ``testbed``."""
    parser = argparse.ArgumentParser(prog="python -m testbed.images", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="make the node image current")
    build.add_argument(
        "--base",
        help="base image whose python3 is this Python's version "
        "(default: a local Debian bookworm made with mmdebstrap)",
    )
    build.add_argument(
        "--force", action="store_true", help="rebuild the wheelhouse and node image without cache, even when current"
    )
    build.add_argument("--quiet", action="store_true", help="print nothing when the image is current")
    commands.add_parser("status", help="exit 0 when the node image is current, 1 when not")
    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            present, current = node_image_present(), node_image_current()
            print(f"{NODE_IMAGE}: " + ("current" if current else "stale" if present else "missing"))
            return 0 if current else 1

        def progress(line: str) -> None:
            if not (args.quiet and line.endswith(NOTHING_TO_BUILD)):
                print(line, flush=True)

        build_images(args.base, progress, force=args.force)
        return 0
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
