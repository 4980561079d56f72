"""JSON Schemas of the file formats, for editors (yaml-language-server) and CI checks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from testbed.scenario.model import SCHEMA_VERSION, Scenario
from testbed.scenario.router_template import RouterTemplate
from testbed.scenario.thresholds import PRESETS


def _schema(model: type[BaseModel], title: str, ident: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": ident,
        "title": title,
        **{k: v for k, v in schema.items() if k != "title"},
    }


def scenario_schema() -> dict[str, Any]:
    schema = _schema(Scenario, f"voip-testbed scenario (format {SCHEMA_VERSION})", "voip-testbed/scenario.schema.json")
    rules = schema["properties"]["thresholds"]  # a rule, or a preset entry the loader expands into rules
    rules["items"] = {"anyOf": [rules["items"], _preset_entry()]}
    return schema


def _preset_entry() -> dict[str, Any]:
    """``{preset: NAME, [variant, call, direction]}``, as ``thresholds.expand_presets`` accepts it."""
    label = {"type": "string"}
    return {
        "type": "object",
        "properties": {"preset": {"enum": sorted(PRESETS)}, "variant": label, "call": label, "direction": label},
        "required": ["preset"],
        "additionalProperties": False,
        "description": "the vendor's published targets as rules (teams: Microsoft's to its edge; twilio: its "
        "preflight warnings)",
    }


def router_template_schema() -> dict[str, Any]:
    return _schema(RouterTemplate, "voip-testbed router template", "voip-testbed/router-template.schema.json")
