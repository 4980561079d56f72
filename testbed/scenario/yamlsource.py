"""Read YAML into plain Python data while remembering the line of every value.

PyYAML silently keeps the last of two equal keys (two nodes both named ``client``); this reader
rejects them, and records each value's line so errors can say ``office.yaml:14``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testbed.errors import ScenarioError
from testbed.scenario.files import InputFileError, read_input_text

Path_ = tuple[str | int, ...]


@dataclass
class YamlDocument:
    """Parsed data of one file plus the line (1-based) where each field path starts."""

    path: Path
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    nodes_built: int = 0

    def line_of(self, loc: Path_) -> int | None:
        """The line of ``loc``, or of its nearest parent that has one."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None


def format_loc(loc: tuple[str | int, ...]) -> str:
    """('links', 'wan', 'router', 'rate') -> ``links.wan.router.rate``; list items as ``calls[0]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


MAX_NODES = 100_000  # a scenario has hundreds; this stops alias bombs


def _construct(
    node: yaml.Node, loc: Path_, doc: YamlDocument, loader: yaml.SafeLoader, stack: tuple[int, ...] = ()
) -> Any:
    if id(node) in stack:
        raise _error(doc, node, "a YAML alias refers to itself")
    doc.nodes_built += 1
    if doc.nodes_built > MAX_NODES:
        raise _error(doc, node, f"the file expands to more than {MAX_NODES} values (YAML aliases?)")
    stack = stack + (id(node),)
    doc.lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                raise _error(doc, key_node, "a mapping key must be a plain name")
            key = str(key) if not isinstance(key, str) else key
            if key in result:
                first = doc.lines.get(loc + (key,))
                raise _error(doc, key_node, f"duplicate key {key!r} (first defined on line {first})")
            doc.lines[loc + (key,)] = key_node.start_mark.line + 1
            result[key] = _construct(value_node, loc + (key,), doc, loader, stack)
            doc.lines[loc + (key,)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, loc + (index,), doc, loader, stack) for index, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _error(doc: YamlDocument, node: yaml.Node, message: str) -> ScenarioError:
    return ScenarioError([f"{doc.path}:{node.start_mark.line + 1}: {message}"])


def load_yaml(path: Path) -> YamlDocument:
    """Parse ``path``; raises ScenarioError (exit 2) for unreadable files and YAML syntax errors."""
    try:
        text = read_input_text(path)
    except InputFileError as exc:
        raise ScenarioError([f"{path}: {exc}"]) from None
    doc = YamlDocument(path=path, data=None)
    try:
        loader = yaml.SafeLoader(text)  # checks every character first: a control character fails here
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ScenarioError([f"{path}:{line}: not YAML text: character U+{exc.character:04X} is not allowed"]) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise ScenarioError([f"{path}: the file is empty"])
        doc.data = _construct(root, (), doc, loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line
        raise ScenarioError([f"{where}: YAML syntax error: {problem}"]) from None
    finally:
        loader.dispose()
    return doc
