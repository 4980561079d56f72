"""JSON Schemas of the file formats, for editors (yaml-language-server) and CI checks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from testbed.scenario.model import SCHEMA_VERSION, Scenario
from testbed.scenario.router_template import RouterTemplate


def _schema(model: type[BaseModel], title: str, ident: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": ident,
        "title": title,
        **{k: v for k, v in schema.items() if k != "title"},
    }


def scenario_schema() -> dict[str, Any]:
    return _schema(Scenario, f"voip-testbed scenario (format {SCHEMA_VERSION})", "voip-testbed/scenario.schema.json")


def router_template_schema() -> dict[str, Any]:
    return _schema(RouterTemplate, "voip-testbed router template", "voip-testbed/router-template.schema.json")
