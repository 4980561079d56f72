"""Bad input, fuzzed: damaged scenario and router-template files (wrong types, ranges and units at every
field, unknown and missing keys, raw YAML damage) load or fail with the project's input error, one
located line per problem; never another exception, never a hang. A few hundred inputs here; 10,000 and
more with ``bench/fuzz.py``."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.fuzz import damaged_file, try_load


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rng=st.randoms(use_true_random=False))
def test_damaged_files_load_or_say_what_is_wrong(rng: random.Random, tmp_path):
    kind, text = damaged_file(rng)
    outcome = try_load(kind, text, tmp_path)
    assert outcome.kind != "escape", f"{kind}:\n{text[:2000]}\n---\n{outcome.detail}"
