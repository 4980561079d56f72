"""A sweep's plan, pure: trials from the cross product, each validated with its values set, exact shard
partitions, a seeded shuffle, shards from CI engines' variables, and the fingerprints that say what a
baseline or a shard must share."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from testbed.cli import main
from testbed.errors import InputError, ScenarioError
from testbed.scenario import load_scenario
from testbed.scenario.fingerprint import experiment_fingerprint, experiment_sections, plan_fingerprint
from testbed.sweep.plan import make_plan, run_order, shard_trials
from testbed.sweep.shard import shard_from
from tests.helpers import REPO

SWEEP = REPO / "scenarios" / "uplink-sweep.yaml"


def _write(tmp_path: Path, data: dict, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _data() -> dict:
    return yaml.safe_load(SWEEP.read_text())


def test_the_cross_product_gives_trials_with_their_values_set():
    plan = make_plan(load_scenario(SWEEP))
    assert [t.id for t in plan.trials] == [
        "p1-fifo", "p1-ef-priority", "p2-fifo", "p2-ef-priority", "p3-fifo", "p3-ef-priority"
    ]  # fmt: skip
    assert plan.repeat == 3 and plan.shuffled
    for trial in plan.trials:
        scenario = plan.scenarios[trial.id].scenario
        rate = trial.parameters["links.wan.router.rate"]
        assert scenario.links["wan"]["router"].rate == {"2mbit": 2_000_000, "5mbit": 5_000_000, "10mbit": 10**7}[rate]
        assert list(scenario.variants) == [trial.variant] and scenario.sweep is None
        assert all(rule.variant in (None, trial.variant) and rule.over is None for rule in scenario.thresholds)


def test_a_list_index_and_the_variant_axis(tmp_path):
    data = _data()
    data["sweep"]["parameters"] = {"calls.0.count": [1, 3], "variant": ["ef-priority"]}
    plan = make_plan(load_scenario(_write(tmp_path, data)))
    assert [t.id for t in plan.trials] == ["p1-ef-priority", "p2-ef-priority"]
    assert [plan.scenarios[t.id].scenario.calls[0].count for t in plan.trials] == [1, 3]


def test_a_variants_own_setting_does_not_win_over_the_sweep(tmp_path):
    data = _data()
    data["variants"]["fifo"]["links"] = {"wan": {"router": {"rate": "1mbit"}}}
    plan = make_plan(load_scenario(_write(tmp_path, data)))
    assert plan.scenarios["p3-fifo"].variant("fifo").links["wan"]["router"].rate == 10**7


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"links.wan.router.rate": ["2zbit"]}, r"links.wan.router.rate: .*2zbit.*sweep trial p1-fifo"),
        ({"links.wan.router.rat": ["2mbit"]}, r"links.wan.router.rat: unknown key"),
        (
            {"calls.4.count": [2]},
            r"sweep: calls.4.count: '4' is not an index of a list of 1 \(sweep trial p1-fifo, p1-ef-priority",
        ),
        (
            {"calls.0.count": [0, 2]},
            r"calls\[0\].count: .*greater than or equal to 1.*trial p1-fifo, p1-ef-priority: calls.0.count=0",
        ),
        ({"variant": ["fast"]}, r"sweep.parameters.variant: 'fast' is not a variant"),
        ({"links..wan": [1]}, r"is not a parameter path"),
        ({"links.wan.router.rate": []}, r"give at least one value"),
    ],
)
def test_a_bad_path_or_value_is_named_before_anything_runs(tmp_path, parameters, message):
    data = _data()
    data["sweep"]["parameters"] = parameters
    with pytest.raises(ScenarioError, match=message):
        make_plan(load_scenario(_write(tmp_path, data)))


def test_the_cli_refuses_a_bad_sweep_with_exit_2(tmp_path, capsys):
    data = _data()
    data["sweep"]["parameters"] = {"links.wan.router.rate": ["2zbit"]}
    assert main(["sweep", "plan", str(_write(tmp_path, data))]) == 2
    assert "2zbit" in capsys.readouterr().err
    assert main(["sweep", "plan", str(SWEEP), "--shards", "4"]) == 0


@pytest.mark.parametrize("total", [1, 2, 3, 4, 5, 7])
def test_shards_partition_the_plan_exactly(tmp_path, total):
    data = _data()
    data["sweep"]["parameters"]["calls.0.count"] = [1, 2]
    plan = make_plan(load_scenario(_write(tmp_path, data)))  # 3 x 2 points x 2 variants
    owned = [t.id for index in range(1, total + 1) for t in shard_trials(plan, index, total)]
    assert sorted(owned) == sorted(t.id for t in plan.trials) and len(owned) == len(set(owned))
    sizes = [len(shard_trials(plan, index, total)) for index in range(1, total + 1)]
    assert max(sizes) - min(sizes) <= 2  # whole points (2 variants) while there are enough of them


def test_the_order_is_a_seeded_shuffle_of_every_repetition():
    plan = make_plan(load_scenario(SWEEP))
    listed = run_order(plan.trials, 3, None)
    shuffled = run_order(plan.trials, 3, 7)
    assert sorted(shuffled, key=str) == sorted(listed, key=str) and shuffled != listed and len(listed) == 18
    assert run_order(plan.trials, 3, 7) == shuffled and run_order(plan.trials, 3, 8) != shuffled


def test_shards_from_options_and_ci_engines():
    assert shard_from("2/4", {}).index == 2
    gitlab = shard_from(None, {"CI_NODE_INDEX": "3", "CI_NODE_TOTAL": "3"})
    assert (gitlab.index, gitlab.total, gitlab.source) == (3, 3, "CI_NODE_INDEX/CI_NODE_TOTAL")
    k8s = shard_from(None, {"JOB_COMPLETION_INDEX": "0", "TESTBED_SHARDS": "8"})  # 0-based
    assert (k8s.index, k8s.total) == (1, 8)
    assert shard_from(None, {}).total == 1
    for option, environ in [("0/4", {}), ("5/4", {}), ("x", {}), (None, {"JOB_COMPLETION_INDEX": "8",
                            "TESTBED_SHARDS": "8"}), (None, {"JOB_COMPLETION_INDEX": "1"}),
                            (None, {"CI_NODE_INDEX": "0", "CI_NODE_TOTAL": "2"})]:  # fmt: skip
        with pytest.raises(InputError):
            shard_from(option, environ)


def test_fingerprints_leave_the_router_templates_out_of_the_experiment(tmp_path):
    base = load_scenario(_write(tmp_path, _data(), "a.yaml"))
    data = _data()
    data["variants"]["ef-priority"]["router"]["template"] = "fifo"
    other_template = load_scenario(_write(tmp_path, data, "b.yaml"))
    assert experiment_fingerprint(other_template) == experiment_fingerprint(base)
    assert plan_fingerprint(other_template) != plan_fingerprint(base)
    data = _data()
    data["calls"][0]["codec"] = "pcmu"
    other_calls = experiment_sections(load_scenario(_write(tmp_path, data, "c.yaml")))
    assert [k for k, v in other_calls.items() if experiment_sections(base)[k] != v] == ["calls"]
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    assert experiment_fingerprint(load_scenario(_write(moved, _data(), "a.yaml"))) == experiment_fingerprint(base)


def test_a_swept_tunnel_setting_wins_over_the_variants_own(tmp_path):
    """vpn.yaml's variants set copy_dscp themselves; the sweep's value must be the one that runs."""
    data = yaml.safe_load((REPO / "scenarios" / "vpn.yaml").read_text())
    data["sweep"] = {"parameters": {"topology.tunnels.vpn.copy_dscp": [True, False], "variant": ["tunnel"]}}
    plan = make_plan(load_scenario(_write(tmp_path, data)))
    ran = [plan.scenarios[t.id].variant("tunnel").topology.tunnels["vpn"].copy_dscp for t in plan.trials]
    assert ran == [True, False]


def test_a_template_only_the_sweep_names_is_in_the_plan_fingerprint(tmp_path):
    routers = tmp_path / "routers"
    routers.mkdir()
    mine = (REPO / "scenarios" / "routers" / "ef-priority.yaml").read_text()
    (routers / "mine.yaml").write_text(mine)
    data = _data()
    data["sweep"]["parameters"] = {"variants.ef-priority.router.template": ["ef-priority", "mine"]}
    path = _write(tmp_path, data)
    before = make_plan(load_scenario(path)).fingerprint
    (routers / "mine.yaml").write_text(mine.replace("description:", "description: changed,", 1))
    assert make_plan(load_scenario(path)).fingerprint != before
    from testbed.sweep.packaging import scenario_files

    plan = make_plan(load_scenario(path))
    assert "mine.yaml" in scenario_files([plan.loaded, *plan.scenarios.values()])


def test_a_variants_tunnels_are_part_of_the_experiment(tmp_path):
    data = yaml.safe_load((REPO / "scenarios" / "vpn.yaml").read_text())
    base = experiment_sections(load_scenario(REPO / "scenarios" / "vpn.yaml"))
    data["variants"]["tunnel"]["tunnels"]["vpn"]["copy_dscp"] = True
    changed = experiment_sections(load_scenario(_write(tmp_path, data)))
    assert [k for k in base if base[k] != changed[k]] == ["topology"]


def test_the_order_runs_every_trial_once_per_repetition_block():
    plan = make_plan(load_scenario(SWEEP))
    order = run_order(plan.trials, 3, 11)
    for block in range(3):
        runs = order[block * 6 : (block + 1) * 6]
        assert {r for _, r in runs} == {block + 1} and sorted(t.id for t, _ in runs) == sorted(
            t.id for t in plan.trials
        )
