"""The run registry's files: atomic records, a tolerant reader, and the history of started runs."""

from __future__ import annotations

from testbed.lab.registry import Registry, Resource


def test_records_come_and_go_but_history_stays(tmp_path):
    registry = Registry(tmp_path)
    first = registry.new_run("test one")
    second = registry.new_run("test two")
    registry.add(first, Resource("netns", f"vtb-{first.run_id}-client"))
    assert {r.run_id for r in registry.runs()} == {first.run_id, second.run_id}
    assert registry.load(first.run_id).resources[0].name == f"vtb-{first.run_id}-client"
    registry.forget(first.run_id)
    registry.forget(second.run_id)
    assert registry.runs() == []
    assert registry.history() == [first.run_id, second.run_id]


def test_unreadable_records_are_skipped(tmp_path):
    registry = Registry(tmp_path)
    (tmp_path / "abcdef.json").write_text("{not json")
    assert registry.runs() == [] and registry.load("abcdef") is None
    assert registry.load("../etc") is None
