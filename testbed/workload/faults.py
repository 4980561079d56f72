"""What counts as a fault of the testbed during a workload, and how it is said.

A fault is anything that makes the rest of the measurement untrue: an agent, tap or traffic process
that died, an impairment engine or service that stopped, a lab command that failed. The workload stops
at the first one, winds down what still runs and keeps what was recorded, so the run ends with exit 4
and its partial results can still be read (``testbed score``).
"""

from __future__ import annotations

import signal

# what losing each kind of child means for the run's figures (children are named by the workload)
CHILD_LOSS = {
    "tap": "the packets it would have recorded on that interface are lost",
    "source": "its cross traffic stopped, so the links no longer carry what the scenario says",
    "sink": "its cross traffic is no longer received (its figures end there)",
}


def describe_exit(code: int | None) -> str:
    """``-9`` -> "killed by SIGKILL"; ``3`` -> "exit status 3"."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code > 128:  # a shell's or docker exec's way of saying a signal ended it
        try:
            return f"exit status {code}: killed by {signal.Signals(code - 128).name}"
        except ValueError:
            pass
    return f"exit status {code}"


def child_fault(node: str, child: str, code: int | None) -> str:
    """One line for a child process that ended without being asked to."""
    kind = child.split("-", 1)[0]
    what = {"tap": "the packet tap", "source": "the traffic source", "sink": "the traffic sink"}.get(kind, "child")
    name = child.split("-", 1)[1] if "-" in child else child
    loss = CHILD_LOSS.get(kind, "what it measured is incomplete")
    return f"{what} {name!r} in node {node} ended on its own ({describe_exit(code)}): {loss}"


def agent_fault(node: str, code: int | None) -> str:
    return f"the agent in node {node} died ({describe_exit(code)}): its calls' media, taps and traffic ended with it"
