"""Fingerprints: what makes two runs the same experiment, and two shards the same plan.

An experiment is its topology (each variant's: tunnels may differ), the vendor's edge, links (each
variant's, impairments included), calls, traffic, timeline and variant names; the router templates
under test are left out, because a baseline comparison is exactly a changed template against a stored
run. A plan adds everything else: the router templates' contents and the sweep section. Files the
scenario names (traces, speech) count by content, not path, so a checkout elsewhere gives the same
fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from testbed.scenario.files import MAX_WAV_BYTES, InputFileError, read_input_file
from testbed.scenario.load import LoadedScenario

EXPERIMENT_SECTIONS = ("topology", "edge", "links", "calls", "traffic", "timeline", "variants")


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _portable(value: Any, file_field: bool = False) -> Any:
    """The same data with the files it names (a link's ``trace``, a call's ``speech`` WAVs) replaced by the
    file's name and content hash. Only those fields: any other string is text, never a file to read."""
    if isinstance(value, dict):
        return {
            key: _portable(item, key == "trace" or (file_field and key in ("from", "to")) or key == "speech")
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_portable(item) for item in value]
    if file_field and isinstance(value, str) and value.startswith("/"):
        try:
            return f"file {Path(value).name} {hashlib.sha256(read_input_file(value, MAX_WAV_BYTES)).hexdigest()[:16]}"
        except InputFileError:
            return value  # validation read it; gone since: the path stands for it
    return value


def _dump(model: BaseModel | Sequence[BaseModel]) -> Any:
    if not isinstance(model, BaseModel):
        return [_portable(item.model_dump(mode="json", by_alias=True)) for item in model]
    return _portable(model.model_dump(mode="json", by_alias=True))


def experiment_sections(loaded: LoadedScenario) -> dict[str, str]:
    """A digest per section of the experiment (``EXPERIMENT_SECTIONS``), so a refusal can say what differs."""
    scenario = loaded.scenario
    variants = {name: _dump(loaded.variant(name)) for name in loaded.variant_names}
    parts = {
        "topology": {name: variant.get("topology") for name, variant in variants.items()},
        "edge": _dump(scenario.edge),
        "links": {name: variant.get("links") for name, variant in variants.items()},
        "calls": _dump(scenario.calls),
        "traffic": _dump(scenario.traffic),
        "timeline": _dump(scenario.timeline),
        "variants": sorted(loaded.variant_names),
    }
    return {name: digest(parts[name]) for name in EXPERIMENT_SECTIONS}


def experiment_fingerprint(loaded: LoadedScenario) -> str:
    return digest(experiment_sections(loaded))


def plan_fingerprint(loaded: LoadedScenario) -> str:
    """The whole scenario (sweep section included) and every variant's router template, by content."""
    templates = {name: _dump(template) for name, template in sorted(loaded.variant_templates.items())}
    timeline = {name: _dump(template) for name, template in sorted(loaded.timeline_templates.items())}
    return digest({"scenario": _dump(loaded.scenario), "templates": templates, "timeline_templates": timeline})
