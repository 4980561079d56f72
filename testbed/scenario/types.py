"""Pydantic field types for the units of ``testbed.units``, with a JSON Schema editors can check."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from testbed import units

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,14}$"
LABEL_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


def _check_name(value: str) -> str:
    if not re.fullmatch(NAME_PATTERN, value):
        raise ValueError(
            f"{value!r} is not a valid node or link name: use lower-case letters, digits and '-', "
            "at most 15 characters, starting with a letter (it becomes an interface name)"
        )
    return value


def _check_label(value: str) -> str:
    if not re.fullmatch(LABEL_PATTERN, value):
        raise ValueError(
            f"{value!r} is not a valid name: use lower-case letters, digits, '.', '_' and '-', at most 64 characters"
        )
    return value


# node and link names become namespace and interface names (15 characters at most)
Name = Annotated[
    str,
    AfterValidator(_check_name),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": NAME_PATTERN,
            "description": "lower-case letters, digits and '-', at most 15, starting with a letter",
        }
    ),
]
# scenario, variant, call and traffic names only label results
Label = Annotated[
    str,
    AfterValidator(_check_label),
    WithJsonSchema(
        {"type": "string", "pattern": LABEL_PATTERN, "description": "lower-case letters, digits, '.', '_', '-'"}
    ),
]

Rate = Annotated[
    int,
    BeforeValidator(units.parse_rate),
    PlainSerializer(lambda bits: f"{bits}bit", when_used="json"),  # JSON dumps read back as input
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d+(\.\d+)?\s*([kmgKMG]?(bit|bps)|[kmgKMG])(/s)?$",
            "description": f"bits per second, {units.RATE_EXAMPLES}",
        }
    ),
]
Duration = Annotated[
    float,
    BeforeValidator(units.parse_duration),
    PlainSerializer(lambda seconds: f"{seconds!r}s" if seconds else 0, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+)?\s*(us|µs|ms|s|sec|min)$"}, {"const": 0}],
            "description": f"a duration, {units.DURATION_EXAMPLES}",
        }
    ),
]
Percent = Annotated[
    float,
    BeforeValidator(units.parse_percent),
    PlainSerializer(lambda percent: f"{percent!r}%" if percent else 0, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+)?\s*%$"}, {"const": 0}],
            "description": f"a percentage, {units.PERCENT_EXAMPLES}",
        }
    ),
]
Size = Annotated[
    int,
    BeforeValidator(units.parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\d+(\.\d+)?\s*([kKmM]i?[bB]|[bB])?$"},
                {"type": "integer", "minimum": 0},
            ],
            "description": f"bytes, {units.SIZE_EXAMPLES}",
        }
    ),
]
Dscp = Annotated[
    int,
    BeforeValidator(units.parse_dscp),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer", "minimum": 0, "maximum": 63}, {"enum": sorted(units.DSCP_NAMES)}],
            "description": "a DSCP value 0-63 or a name such as EF, AF41, CS3",
        }
    ),
]


class Strict(BaseModel):
    """A section of a scenario file: unknown keys are errors that suggest the nearest allowed key."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        allowed = [field.alias or name for name, field in cls.model_fields.items()]
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown key {key!r}{hint} (allowed: {', '.join(allowed)})")
        return data


TEMPLATE_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"


def _check_template(value: str) -> str:
    if not re.fullmatch(TEMPLATE_PATTERN, value) or value in (".", ".."):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ValueError(
            f"{shown!r} is not a router template name: letters, digits, '.', '_' and '-', at most 100 characters "
            "(a file in scenarios/routers/ without .yaml, never a path)"
        )
    return value


# a router template by name: a file in a templates directory, never a path (nothing outside them is read)
TemplateName = Annotated[
    str, AfterValidator(_check_template), WithJsonSchema({"type": "string", "pattern": TEMPLATE_PATTERN})
]
