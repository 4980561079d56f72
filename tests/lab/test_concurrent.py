"""Two `testbed run` of the same scenario at once on network namespaces: their own ids, namespaces and
packets; both complete; a host that falls behind is flagged, never passed off as the network's doing."""

from tests.helpers.concurrent import check_they_never_met, run_two_at_once


def test_two_runs_at_once_never_meet(registry, no_leftovers, tmp_path):
    results = run_two_at_once(tmp_path, "netns")
    check_they_never_met(tmp_path, results, registry)
