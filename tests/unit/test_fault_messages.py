"""How a fault is said: which process, how it ended, what the run lost."""

from testbed.workload.faults import agent_fault, child_fault, describe_exit


def test_exit_statuses_read_as_people_say_them():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(137) == "exit status 137: killed by SIGKILL"  # docker exec, a shell
    assert describe_exit(2) == "exit status 2"
    assert describe_exit(-99) == "killed by signal 99"
    assert describe_exit(None) == "still running"


def test_a_child_fault_names_the_child_its_node_and_the_loss():
    said = child_fault("client", "source-bulk", -15)
    assert said.startswith("the traffic source 'bulk' in node client ended on its own (killed by SIGTERM)")
    assert "no longer carry what the scenario says" in said
    assert "packets it would have recorded" in child_fault("gateway", "tap-wan", 1)
    assert "the agent in node gateway died (exit status 137: killed by SIGKILL)" in agent_fault("gateway", 137)
