"""The wheelhouse: ``pip wheel`` of the project and its dependencies on the host, pinned to the versions
installed here, so the nodes run the same libraries as the host that scores their output."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from testbed.errors import CapabilityError
from testbed.images.common import PROJECT_DIST, ImageBuildError, Progress, normalize


def pinned_requirements() -> list[str]:
    """``name==version`` for the project's runtime dependencies (transitively) as installed here."""
    try:
        # the installed project's metadata lacks a dependency added to pyproject.toml until the next
        # `pip install -e .`; the wheel is built from pyproject.toml, so its list counts too
        queue = [PROJECT_DIST, *declared_requirements()]
        seen: dict[str, str] = {}
        while queue:
            name = normalize(queue.pop())
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
    seen.pop(normalize(PROJECT_DIST), None)
    return sorted(f"{name}=={version}" for name, version in seen.items())


def declared_requirements() -> list[str]:
    """The names of the runtime dependencies in the checkout's pyproject.toml (none when there is none)."""
    path = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if not path.is_file():
        return []
    with open(path, "rb") as file:
        requirements = tomllib.load(file).get("project", {}).get("dependencies", [])
    return [match.group(1) for r in requirements if (match := re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r))]


def build_wheelhouse(source: Path, tmp: Path, wheelhouse: Path, progress: Progress) -> str:
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
    own = normalize(PROJECT_DIST).replace("-", "_") + "-"
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
