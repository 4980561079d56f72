"""A non-editable install works on its own: built as a wheel, installed into a fresh venv and run from
another directory, it validates a scenario naming a shipped router template and runs ``lab check``.

Dependencies are not downloaded again: the fresh venv sees the project venv's site-packages through a
``.pth`` file, and the project goes in with ``--no-deps``. Building the wheel needs the build backend
(setuptools), which pip fetches once and then takes from its cache.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.helpers import REPO

SCENARIO = """\
name: installed
description: the shipped minimal lab with the shipped ef-priority template, from outside the source tree
router: {template: ef-priority}
"""


def _run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv holding the project installed from a wheel; returns its bin directory."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"  # a copy, so the build leaves nothing in the working tree
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "testbed", source / "testbed", symlinks=True, ignore=ignore)
    shutil.copytree(REPO / "scenarios", source / "scenarios", ignore=ignore)
    wheels = root / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if build.returncode != 0 and "Could not find a version" in build.stderr + build.stdout:
        pytest.skip(f"no build backend available offline: {build.stderr.strip()[-300:]}")
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("voip_testbed-*.whl")

    env = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    bin_dir = env / "bin"
    python = bin_dir / "python"
    purelib = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root).stdout.strip()
    )
    (purelib / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)], root)
    return bin_dir


def test_the_installed_package_is_not_the_source_tree(installed, tmp_path):
    code = "import testbed, importlib.metadata as m; print(testbed.__file__); print(m.version('voip-testbed'))"
    where, version = _run([str(installed / "python"), "-c", code], tmp_path).stdout.split()
    assert Path(where).is_relative_to(installed.parent), where
    assert not Path(where).is_relative_to(REPO)
    import testbed

    assert version == testbed.__version__  # written once, in testbed/__init__.py


def test_validate_and_lab_check_from_another_directory(installed, tmp_path, registry, no_leftovers):
    (tmp_path / "installed.yaml").write_text(SCENARIO)
    validated = _run([str(installed / "testbed"), "validate", "installed.yaml"], tmp_path)
    assert "installed.yaml" in validated.stdout
    checked = _run([str(installed / "testbed"), "lab", "check", "installed.yaml"], tmp_path)
    assert "client" in checked.stdout and "gateway" in checked.stdout
