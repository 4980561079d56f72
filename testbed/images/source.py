"""The checkout the node image is made of: where it is, which files count, and their hash."""

from __future__ import annotations

import hashlib
import re
import shutil
import tomllib
from pathlib import Path

from testbed.errors import CapabilityError
from testbed.images.common import PYTHON_VERSION
from testbed.images.wheelhouse import pinned_requirements

# what goes into the project wheel, relative to the repository root
SOURCE_FILES = ("pyproject.toml", "README.md", "setup.cfg", "setup.py", "MANIFEST.in")
SOURCE_PACKAGE = "testbed"


def repo_root() -> Path:
    """The project checkout this package runs from; image builds need its containers/ and pyproject.toml."""
    root = Path(__file__).resolve().parents[2]
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
    for path in [root / "containers" / "Dockerfile", *source_paths(root)]:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def source_paths(root: Path) -> list[Path]:
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


def snapshot(root: Path, dest: Path) -> Path:
    """Copy what the image is made of from the checkout: the project's files and the Dockerfile."""
    for path in [root / "containers" / "Dockerfile", *source_paths(root)]:
        target = dest / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dest


def project_version(root: Path) -> str:
    """The version in pyproject.toml, or the package's ``__version__`` when pyproject reads it from there."""
    with open(root / "pyproject.toml", "rb") as file:
        version = tomllib.load(file).get("project", {}).get("version")
    if version is None:
        init = (root / SOURCE_PACKAGE / "__init__.py").read_text()
        found = re.search(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", init, re.MULTILINE)
        version = found.group(1) if found else "?"
    return str(version)
