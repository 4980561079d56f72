"""One exception type per kind of failure a user can fix; each maps to a documented exit code.

Exit codes: 0 ok, 1 thresholds failed, 2 bad input, 3 missing capability, 4 the testbed itself failed,
130 interrupted.
"""

from __future__ import annotations


class TestbedError(Exception):
    """Base class: the message is shown to the user as it is, on one line where possible."""

    exit_code = 4
    __test__ = False  # not a pytest test class, despite its name


class InputError(TestbedError):
    """The user's input (a scenario, a template, an argument) is wrong; the message says how to fix it."""

    exit_code = 2


class ScenarioError(InputError):
    """A scenario or router template file has one or more problems, each located by file, line, field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class CapabilityError(TestbedError):
    """This host lacks something the request needs (root, a qdisc, Docker); the message says how to get it."""

    exit_code = 3


class LabError(TestbedError):
    """Building or driving the emulated network failed for a reason outside the user's input."""

    exit_code = 4


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C so every ``finally`` and ``__exit__`` runs."""
