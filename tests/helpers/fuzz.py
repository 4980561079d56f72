"""Damaged scenario and router-template files, and what loading one may do: load, or fail with the
project's input error, each problem one line naming the file (or a file it names); never another
exception, never a hang.
Shared by the property test (``tests/unit/test_fuzz_inputs.py``, hypothesis drives the ``Random``) and
``bench/fuzz.py`` (10,000 and more inputs from seeded ``Random``s)."""

from __future__ import annotations

import random
import signal
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testbed.errors import InputError
from testbed.scenario.load import load_scenario, load_template

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))
TEMPLATES = sorted((REPO / "scenarios" / "routers").glob("*.yaml"))
HANG_S = 10  # a load that takes longer is a hang


@dataclass
class Outcome:
    kind: str  # "loaded", "input error" or "escape"
    detail: str = ""


# ------------------------------------------------------------ values that are wrong in every way

UNIT_WORDS = ["10mbit", "0", "-5ms", "1e400kbit", "50%", "150%", "nan%", "inf", "20 ms", "1.5.2s", "EF", "46", "0x2e"]
ODD_TEXT = ["", " ", "\t", "\x00", "\x1b[31m", "é", "\u202e", "名前", "💥", "a" * 300, "../../etc/passwd", "-", "~"]


def odd_value(rng: random.Random) -> Any:
    """A value of a wrong type, range or unit (or, sometimes, a plausible one)."""
    choice = rng.randrange(12)
    if choice == 0:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**64, 10**400 if rng.random() < 0.5 else 7])
    if choice == 1:
        return rng.choice([float("nan"), float("inf"), float("-inf"), -0.0, 1e308, 5e-324, 0.5])
    if choice == 2:
        return rng.choice(UNIT_WORDS)
    if choice == 3:
        return rng.choice(ODD_TEXT)
    if choice == 4:
        return rng.choice([True, False, None])
    if choice == 5:
        return [odd_value(rng) for _ in range(rng.randrange(3))]
    if choice == 6:
        return {rng.choice(["x", "name", "rate", "", "1"]): odd_value(rng)}
    if choice == 7:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(1, 12)))
    if choice == 8:
        return rng.choice(["client", "gateway", "router", "wan", "lan", "ef-priority", "fifo", "opus", "pcmu"])
    if choice == 9:
        return f"{rng.randrange(-100, 10**6)}{rng.choice(['ms', 's', 'mbit', 'kbit', '%', 'B', 'min', ''])}"
    if choice == 10:
        return {}
    return []


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a parsed document: mapping keys and list items, nested."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield prefix + (key,)
            yield from paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield prefix + (index,)
            yield from paths(value, prefix + (index,))


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


def mutate_structure(data: Any, rng: random.Random) -> Any:
    """One to three field-level changes: a wrong value, a key removed, an unknown key added."""
    for _ in range(rng.randrange(1, 4)):
        places = list(paths(data))
        if not places or not isinstance(data, dict):
            return odd_value(rng)
        path = rng.choice(places)
        parent = _parent(data, path)
        op = rng.randrange(3)
        if op == 0:
            parent[path[-1]] = odd_value(rng)
        elif op == 1:
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(["colour", "rate ", "Name", "x-extra", "links2", "é"])] = odd_value(rng)
        else:
            parent.append(odd_value(rng))
    return data


def damage_text(text: str, rng: random.Random) -> str:
    """Raw YAML damage: truncation, tabs, duplicated lines (keys), anchors and aliases, huge numbers,
    NaN and infinity, unicode and control characters, unbalanced brackets."""
    lines = text.splitlines(keepends=True) or [""]
    op = rng.randrange(9)
    at = rng.randrange(len(text) + 1)
    if op == 0:
        return text[:at]
    if op == 1:
        return text[:at] + "\t" + text[at:]
    if op == 2:
        index = rng.randrange(len(lines))
        return "".join(lines[: index + 1] + [lines[index]] + lines[index + 1 :])
    if op == 3:  # an alias bomb, or an alias to an unknown anchor
        bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
        )
        return rng.choice([bomb + text, text + "\nextra: *nowhere\n", "x: &r [*r]\n" + text])
    if op == 4:
        return text[:at] + rng.choice(["9" * 400, ".nan", ".inf", "-.inf", "1e999", "0x" + "f" * 40]) + text[at:]
    if op == 5:
        return text[:at] + rng.choice(ODD_TEXT + ["\x07", "\r", "\ufeff", "\udcff"]) + text[at:]
    if op == 6:
        return (
            text[:at]
            + rng.choice(["[", "{", "]", "}", ": ", "- ", "'", '"', "!!python/object:os.system\n"])
            + text[at:]
        )
    if op == 7:
        return "".join(rng.sample(lines, len(lines)))
    return text.replace(" ", "", rng.randrange(1, 4))


def damaged_file(rng: random.Random) -> tuple[str, str]:
    """(kind, text): a shipped scenario or router template, damaged structurally or as text."""
    kind = "template" if rng.random() < 0.3 else "scenario"
    source = rng.choice(TEMPLATES if kind == "template" else SCENARIOS)
    text = source.read_text()
    if rng.random() < 0.5:
        data = yaml.safe_load(text)
        text = yaml.safe_dump(mutate_structure(data, rng), allow_unicode=True, sort_keys=False)
    else:
        text = damage_text(text, rng)
    return kind, text


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    def hang(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no answer within {seconds}s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def try_load(kind: str, text: str, directory: Path) -> Outcome:
    """Load ``text`` as a file of ``kind`` placed in ``directory`` (beside copies of nothing: the shipped
    templates are found as package data) and say what happened."""
    path = directory / ("damaged.yaml" if kind == "scenario" else "routers-damaged.yaml")
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        with deadline(HANG_S):
            load_scenario(path) if kind == "scenario" else load_template(path)
    except InputError as exc:
        problems = getattr(exc, "problems", None) or [str(exc)]
        bad = [p for p in problems if "\n" in p or not p.startswith((str(path), "/"))]  # this file, or one it names
        if bad:
            return Outcome("escape", f"input error not one located line: {bad[0]!r}")
        return Outcome("input error", problems[0])
    except TimeoutError as exc:
        return Outcome("escape", f"hang: {exc}")
    except Exception:  # noqa: BLE001 - the point: anything but InputError is an escape
        return Outcome("escape", traceback.format_exc(limit=-3))
    return Outcome("loaded")
