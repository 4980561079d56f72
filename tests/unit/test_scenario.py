"""Scenario files: the shipped ones load, bad ones give one specific located line and exit 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.errors import ScenarioError
from testbed.scenario import load_scenario
from testbed.scenario.schema import router_template_schema, scenario_schema
from tests.helpers.cli import run_cli

REPO = Path(__file__).resolve().parents[2]
BAD = Path(__file__).parent / "bad_scenarios"
SHIPPED = sorted((REPO / "scenarios").glob("*.yaml"))

# file -> (line, text the one-line error must contain)
BAD_FILES = {
    "wrong_unit.yaml": (4, "links.wan.router.rate: '10 megabits' is not a rate (unknown unit 'megabits')"),
    "negative_rate.yaml": (4, "links.wan.router.rate: '-5mbit' is negative"),
    "loss_over_100.yaml": (4, "links.wan.router.loss.rate: '150%' is more than 100%; allowed: 0% to 100%"),
    "unknown_key.yaml": (4, "links.wan.router.rte: unknown key; did you mean 'rate'?"),
    "unknown_node_in_link.yaml": (8, "topology.links.lan.endpoints[0]: unknown node 'clinet'; did you mean 'client'?"),
    "duplicate_node.yaml": (6, "duplicate key 'client' (first defined on line 4)"),
    "missing_template.yaml": (
        2,
        "router.template: router template 'ef-priorty' not found; did you mean 'ef-priority'?",
    ),
    "bad_delay_unit.yaml": (4, "links.wan.router.delay: 50 is not a duration (a bare number is ambiguous)"),
    "bad_dscp.yaml": (3, "calls[0].dscp: DSCP 99 is out of range; allowed: 0 to 63"),
    "bad_codec.yaml": (3, "calls[0].codec: Input should be 'opus', 'pcmu', 'pcma' or 'g722' (got 'g729')"),
    "link_sender_not_endpoint.yaml": (4, "links.wan.client: 'client' is not an endpoint of link 'wan'"),
    "call_to_router.yaml": (3, "calls[0].to: 'router' is a router; calls run between hosts"),
    "yaml_syntax.yaml": (4, "YAML syntax error"),
    "unknown_top_section.yaml": (2, "treshold: unknown key; did you mean 'thresholds'?"),
    "bad_subnet.yaml": (4, "topology.links.lan.subnet: Input is not a valid IPv4 network (got '10.1.0.0/33')"),
    "gilbert_missing_r.yaml": (4, "links.wan.router.loss: loss model 'gilbert_elliott' needs r"),
    "bad_name.yaml": (1, "name: 'Office Uplink' is not a valid name"),
    # found by the fuzzer (bench/fuzz.py): a YAML reader error, a template named by a path, a removed node
    "control_character.yaml": (3, "not YAML text: character U+0007 is not allowed"),
    "template_path.yaml": (3, "timeline[0].template: '../../etc/passwd' is not a router template name"),
    "node_removed.yaml": (7, "topology.links.lan.endpoints[1]: unknown node 'router'"),
}


def test_every_bad_file_is_covered():
    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(BAD_FILES)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_scenarios_load(path):
    loaded = load_scenario(path)
    for variant in loaded.variant_names:
        assert loaded.variant(variant).name == loaded.scenario.name
        assert variant in loaded.variant_templates


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_gives_one_located_line(name):
    line, expected = BAD_FILES[name]
    with pytest.raises(ScenarioError) as caught:
        load_scenario(BAD / name)
    first = caught.value.problems[0]
    assert first.startswith(f"{BAD / name}:{line}: "), first
    assert expected in first, first


@pytest.mark.parametrize(
    "name",
    ["unknown_key.yaml", "loss_over_100.yaml", "duplicate_node.yaml", "missing_template.yaml", "yaml_syntax.yaml"],
)
def test_cli_validate_exit_2_without_traceback(name):
    result = run_cli("validate", str(BAD / name))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert BAD_FILES[name][1] in lines[0]


def test_cli_validate_reports_missing_file():
    result = run_cli("validate", "no/such.yaml")
    assert result.returncode == 2 and "no/such.yaml: no such file" in result.stderr


def test_default_topology_is_client_router_gateway():
    loaded = load_scenario(REPO / "scenarios" / "minimal.yaml")
    topology = loaded.scenario.topology
    assert {n: s.kind for n, s in topology.nodes.items()} == {"client": "host", "router": "router", "gateway": "host"}
    assert [link.endpoints for link in topology.links.values()] == [["client", "router"], ["router", "gateway"]]


def test_variant_merges_router_and_links(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text(
        "name: v\n"
        "links: {wan: {router: {rate: 10mbit, delay: 20ms}}}\n"
        "variants:\n"
        "  slow: {links: {wan: {router: {rate: 2mbit}}}, router: {template: ef-priority}}\n"
        "  plain: {}\n"
    )
    (tmp_path / "routers").mkdir()
    for name in ("fifo", "ef-priority"):
        (tmp_path / "routers" / f"{name}.yaml").write_text((REPO / "scenarios/routers" / f"{name}.yaml").read_text())
    loaded = load_scenario(path)
    slow = loaded.variant("slow")
    assert slow.links["wan"]["router"].rate == 2_000_000
    assert slow.links["wan"]["router"].delay == pytest.approx(0.02)  # kept from the base
    assert slow.router.template == "ef-priority"
    assert loaded.variant("plain").router.template == "fifo"
    with pytest.raises(ScenarioError, match="no variant 'fast'"):
        loaded.variant("fast")


def test_published_schemas_are_current():
    """Editors read the committed schema files; regenerate with `testbed schema > ...` when models change."""
    assert json.loads((REPO / "scenarios/scenario.schema.json").read_text()) == scenario_schema()
    assert json.loads((REPO / "scenarios/routers/router-template.schema.json").read_text()) == router_template_schema()


def test_schema_rejects_what_the_loader_rejects():
    jsonschema = pytest.importorskip("jsonschema")
    schema = scenario_schema()
    jsonschema.validate({"name": "ok", "links": {"wan": {"router": {"rate": "10mbit", "delay": "5ms"}}}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "ok", "links": {"wan": {"router": {"rte": "10mbit"}}}}, schema)


def test_scenario_and_scoring_import_nothing_from_the_lab_media_or_workload():

    code = (
        "import sys, testbed.scenario.load, testbed.scenario.schema, testbed.scoring.direction, testbed.codecs, "
        "testbed.rtp\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('testbed.lab', 'testbed.media', 'testbed.workload')))\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_router_templates_are_found_in_the_shipped_package_data(tmp_path):
    from testbed.scenario.load import BUILTIN_SCENARIOS, find_template

    scenario = tmp_path / "alone.yaml"  # no routers/ next to it
    assert find_template("ef-priority", scenario) == BUILTIN_SCENARIOS / "routers" / "ef-priority.yaml"
    assert (BUILTIN_SCENARIOS / "office.yaml").is_file()
    (tmp_path / "routers").mkdir()
    (tmp_path / "routers" / "ef-priority.yaml").write_text((BUILTIN_SCENARIOS / "routers/fifo.yaml").read_text())
    assert find_template("ef-priority", scenario) == tmp_path / "routers" / "ef-priority.yaml"  # next to it first
