"""Load scenario and router template files into validated models, with errors a person can act on.

Every problem becomes one line: ``FILE:LINE: field.path: what is wrong (what is allowed)``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from testbed.errors import ScenarioError
from testbed.scenario.addressing import plan_addresses
from testbed.scenario.model import Impairment, Scenario
from testbed.scenario.references import check_references
from testbed.scenario.router_template import RouterTemplate
from testbed.scenario.speech import SpeechError
from testbed.scenario.speech import check as check_speech
from testbed.scenario.trace import TraceError, load_trace
from testbed.scenario.yamlsource import YamlDocument, format_loc, load_yaml

# the shipped scenarios and router templates: package data (in the source tree a link to scenarios/)
BUILTIN_SCENARIOS = Path(str(files("testbed") / "data" / "scenarios"))
Model = TypeVar("Model", bound=BaseModel)


def _describe(error: ErrorDetails) -> str:
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = error.get("input")
    if error["type"] in ("missing",):
        return "required field is missing"
    shown = repr(value) if not isinstance(value, (dict, list)) else f"a {type(value).__name__}"
    if error["type"] != "value_error" and repr(value) not in message and "unknown key" not in message:
        return f"{message} (got {shown})"
    return message


def validate(doc: YamlDocument, model: type[Model], base_loc: tuple[str | int, ...] = ()) -> Model:
    """Validate ``doc.data`` as ``model``; all problems are raised together as one ScenarioError."""
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(part for part in error["loc"] if part not in ("function-before", "function-after"))
            message = _describe(error)
            unknown = re.match(r"unknown key '([^']+)'", message)
            if unknown:  # point at the key itself, not at its section
                loc = loc + (unknown[1],)
                message = message.replace(f"unknown key {unknown[1]!r}", "unknown key", 1)
            line = doc.line_of(base_loc + loc)
            where = f"{doc.path}:{line}" if line else str(doc.path)
            problems.append(f"{where}: {format_loc(loc)}: {message}")
        raise ScenarioError(problems) from None


def deep_merge(base: Any, overrides: Any) -> Any:
    """Mappings merge key by key; anything else in ``overrides`` replaces what ``base`` had."""
    if isinstance(base, dict) and isinstance(overrides, dict):
        merged = dict(base)
        for key, value in overrides.items():
            merged[key] = deep_merge(base.get(key), value)
        return merged
    return copy.deepcopy(overrides)


def template_search_path(scenario_file: Path) -> list[Path]:
    """Where ``router.template: NAME`` is looked up: next to the scenario, then the shipped library."""
    paths = [scenario_file.parent / "routers", scenario_file.parent.parent / "routers", BUILTIN_SCENARIOS / "routers"]
    unique: list[Path] = []
    for path in paths:
        if path.resolve() not in [p.resolve() for p in unique]:
            unique.append(path)
    return unique


def find_template(name: str, scenario_file: Path) -> Path | None:
    """The template file of that name, next to the scenario first, then among the shipped ones (None: no
    such file, or a name no file can have)."""
    if "/" in name or name in ("", ".", ".."):
        return None  # a name, never a path: nothing outside the template directories is read
    for directory in template_search_path(scenario_file):
        candidate = directory / f"{name}.yaml"
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # a name too long for the file system, say: no such template
            return None
    return None


def available_templates(scenario_file: Path) -> list[str]:
    return sorted({p.stem for d in template_search_path(scenario_file) if d.is_dir() for p in d.glob("*.yaml")})


def load_template(path: Path, overrides: dict[str, Any] | None = None) -> RouterTemplate:
    """Load one router template file, with a scenario's overrides merged in first."""
    doc = load_yaml(path)
    if overrides:
        doc.data = deep_merge(doc.data, overrides)
    return validate(doc, RouterTemplate)


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario and everything it refers to, ready for the lab and the runner."""

    path: Path
    scenario: Scenario
    raw: dict[str, Any] = field(repr=False, compare=False)
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict, repr=False, compare=False)
    variant_templates: dict[str, RouterTemplate] = field(default_factory=dict, repr=False, compare=False)
    timeline_templates: dict[str, RouterTemplate] = field(default_factory=dict, repr=False, compare=False)

    @property
    def variant_names(self) -> list[str]:
        return list(self.scenario.variants) or ["default"]

    def variant(self, name: str) -> Scenario:
        """The scenario as this variant sees it: the variant's router, link and tunnel settings merged in."""
        if name == "default" and not self.scenario.variants:
            return self.scenario
        if name not in self.scenario.variants:
            raise ScenarioError([f"{self.path}: no variant {name!r} (variants: {', '.join(self.variant_names)})"])
        variant = self.raw["variants"][name] or {}
        data = copy.deepcopy(self.raw)
        for key in ("router", "links"):
            if variant.get(key) is not None:
                data[key] = deep_merge(data.get(key) or {}, variant[key])
        if variant.get("tunnels") is not None:  # a variant changes tunnels, never the rest of the topology
            topology = dict(data.get("topology") or {})
            topology["tunnels"] = deep_merge(topology.get("tunnels") or {}, variant["tunnels"])
            data["topology"] = topology
        merged = YamlDocument(self.path, data, self.lines)
        try:
            return with_trace_paths(validate(merged, Scenario), self.path, self.lines)
        except ScenarioError as exc:
            raise ScenarioError([f"{p} (in variant {name!r}, merged with the base)" for p in exc.problems]) from None


def load_scenario(path: str | Path) -> LoadedScenario:
    """Read, validate and cross-check a scenario and the router templates it names."""
    path = Path(path)
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise ScenarioError([f"{path}:1: a scenario is a mapping of sections (name, topology, links, ...)"])
    return load_scenario_document(doc)


def load_scenario_document(doc: YamlDocument) -> LoadedScenario:
    """Validate a scenario already read (a file, or a sweep's trial: the file with its parameters set)."""
    path = doc.path
    scenario = with_trace_paths(validate(doc, Scenario), path, doc.lines)
    problems = list(check_references(scenario, doc, lambda name: find_template(name, path), available_templates(path)))
    if problems:
        raise ScenarioError(problems)
    loaded = LoadedScenario(path=path, scenario=scenario, raw=doc.data, lines=doc.lines)
    for variant_name in loaded.variant_names:
        effective = loaded.variant(variant_name)
        _check_plan(effective, path, variant_name)
        router = effective.router
        loaded.variant_templates[variant_name] = load_template(_existing(router.template, path), router.overrides)
    for event in scenario.timeline:
        if event.template:
            loaded.timeline_templates[event.template] = load_template(_existing(event.template, path))
    return loaded


def _check_plan(scenario: Scenario, path: Path, variant: str) -> None:
    """An address plan that cannot be made is an input error, found at validation, not at lab up."""
    try:
        plan_addresses(scenario.topology)
    except ScenarioError as exc:
        raise ScenarioError([f"{path}: {problem}" for problem in exc.problems]) from None


def with_trace_paths(
    scenario: Scenario, scenario_file: Path, lines: dict[tuple[str | int, ...], int] | None = None
) -> Scenario:
    """Link traces and speech references named relative to the scenario file become absolute, and each
    must load cleanly (a reference WAV must be usable speech: ``scenario.speech``)."""
    problems = []

    def resolve(impairment: Impairment, loc: tuple[str | int, ...]) -> Impairment:
        if not impairment.trace:
            return impairment
        trace = Path(impairment.trace)
        trace = trace if trace.is_absolute() else (scenario_file.parent / trace).resolve()
        try:
            load_trace(trace)
        except (TraceError, OSError) as exc:
            line = (lines or {}).get(loc)
            where = f"{scenario_file}:{line}" if line else str(scenario_file)
            problems.append(f"{where}: {'.'.join(map(str, loc))}: {exc}")
        return impairment.model_copy(update={"trace": str(trace)})

    links = {
        link: {sender: resolve(imp, ("links", link, sender, "trace")) for sender, imp in senders.items()}
        for link, senders in scenario.links.items()
    }
    timeline = [
        event.model_copy(
            update={
                "impairments": {
                    sender: resolve(imp, ("timeline", index, "impairments", sender, "trace"))
                    for sender, imp in event.impairments.items()
                }
            }
        )
        if event.impairments
        else event
        for index, event in enumerate(scenario.timeline)
    ]
    calls = []
    for index, call in enumerate(scenario.calls):
        speech = {}
        for side, alias in (("from_", "from"), ("to", "to")):
            name = getattr(call.speech, side)
            if name is None:
                continue
            wav = Path(name) if Path(name).is_absolute() else (scenario_file.parent / name).resolve()
            try:
                check_speech(wav)
            except SpeechError as exc:
                loc = ("calls", index, "speech", alias)
                line = (lines or {}).get(loc)
                where = f"{scenario_file}:{line}" if line else str(scenario_file)
                problems.append(f"{where}: {'.'.join(map(str, loc))}: {wav}: {exc}")
            speech[alias] = str(wav)
        calls.append(
            call.model_copy(
                update={
                    "speech": call.speech.model_copy(
                        update={"from_": speech.get("from", call.speech.from_), "to": speech.get("to", call.speech.to)}
                    )
                }
            )
        )
    if problems:
        raise ScenarioError(problems)
    return scenario.model_copy(update={"links": links, "timeline": timeline, "calls": calls})


def _existing(template: str, scenario_file: Path) -> Path:
    found = find_template(template, scenario_file)
    if found is None:  # check_references reports this with a line number; this guards direct callers
        raise ScenarioError([f"{scenario_file}: router template {template!r} not found"])
    return found
