"""The package's shape, checked from its source: dependencies point one way and nothing imports in a
circle; modules stay small unless their docstring says why."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGE = REPO / "testbed"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """The testbed modules a module imports, at any depth of its code (lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from package import module`` imports the module; ``from module import name`` the module
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [m for m in submodules if m in MODULES] or [node.module]
        else:
            continue
        found |= {name for name in names if name in MODULES}
    return found


GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}


def reaches(start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for target in GRAPH[stack.pop()]:
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def inside(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def reached_from(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """For each module inside ``packages``: the modules inside ``forbidden`` it reaches, where any."""
    found = {}
    for name in GRAPH:
        if inside(name, *packages):
            wrong = sorted(t for t in reaches(name) if inside(t, *forbidden))
            if wrong:
                found[name] = wrong
    return found


HARNESS = ("testbed.workload", "testbed.runner", "testbed.cli", "testbed.api", "testbed.report", "testbed.capacity")


def test_pure_parts_import_no_lab_media_or_workload_code():
    pure = ("testbed.scenario", "testbed.scoring", "testbed.results")
    assert reached_from(pure, ("testbed.lab", "testbed.media", "testbed.workload")) == {}


def test_node_processes_import_no_harness_code():
    """media/ runs inside nodes: it never reaches the lab, the workload, the runner or the CLI."""
    assert reached_from(("testbed.media",), ("testbed.lab", *HARNESS)) == {}


def test_the_lab_does_not_reach_up():
    assert reached_from(("testbed.lab",), HARNESS) == {}


def test_no_import_cycle():
    """Tarjan's strongly connected components over every import: none may hold two modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in GRAPH[name]:
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == name:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    assert cycles == []


def test_modules_are_small_or_say_why():
    for name, path in MODULES.items():
        text = path.read_text()
        if text.count("\n") > MAX_LINES:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            assert "400-line" in docstring, f"{name}: {text.count(chr(10))} lines and no word on why"


def test_every_package_directory_is_a_package():
    """setuptools finds packages by their ``__init__.py`` (``namespaces = false``): a directory of modules
    without one is left out of the wheel, and so out of the Docker node image."""
    missing = [
        str(directory.relative_to(REPO))
        for directory in PACKAGE.rglob("*")
        if directory.is_dir()
        and "__pycache__" not in directory.parts
        and any(directory.glob("*.py"))
        and not (directory / "__init__.py").exists()
    ]
    assert missing == []
