"""The public Python API: the README's example runs as written, and a lab built from Python is the
network `testbed lab up` builds (the scenario's own router template included)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil

import testbed
from testbed.results import RunResult
from tests.helpers import REPO

EXAMPLE = re.compile(r"<!-- api-example -->\s*```python\n(.*?)```", re.S)


def test_readme_example_runs(registry, no_leftovers, tmp_path):
    code = EXAMPLE.search((REPO / "README.md").read_text()).group(1)
    shutil.copytree(REPO / "scenarios", tmp_path / "scenarios")
    printed = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(printed):
            namespace: dict = {}
            exec(compile(code, "README.md (api example)", "exec"), namespace)
    finally:
        os.chdir(cwd)
    assert "dev lan" in printed.getvalue()  # the client's routes, printed from inside the node
    result = namespace["result"]
    assert isinstance(result, RunResult)
    (variant,) = result.variants
    assert variant.variant == "ef-priority"
    directions = variant.calls[0].scored()
    assert len(directions) == 2
    for scores in directions.values():
        assert scores.mos_emodel is not None and scores.mos_emodel >= 4.0, scores.mos_emodel
    assert (tmp_path / "results" / "api-example" / "result.json").exists()


def test_python_lab_installs_the_scenarios_router_template(registry, no_leftovers):
    """`Experiment.lab()` and `testbed lab up` build the same router: ef-priority's classes are there."""
    experiment = testbed.load(REPO / "scenarios" / "office.yaml")
    with experiment.lab("ef-priority") as lab:
        classes = lab["router"].run(["tc", "class", "show", "dev", "wan"]).stdout
        assert lab.describe()["router"]["template"]
    assert classes.count("class htb") >= 3, classes  # link + voice + bulk (fifo has a single class)
