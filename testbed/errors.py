"""One exception type per kind of failure a user can fix; each maps to a documented exit code.

The CLI and the processes the testbed starts inside nodes exit with ``ExitCode``. Standard library only:
node processes import this.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a command's (or a child process's) exit status means; the README lists them."""

    OK = 0
    FAILED = 1  # a check or threshold failed; a child process: it reported an error event
    BAD_INPUT = 2  # a scenario, template or argument is wrong
    MISSING_CAPABILITY = 3  # not root, a kernel module or a tool is missing
    TESTBED_FAILED = 4  # the testbed itself failed
    INTERRUPTED = 130  # Ctrl-C or SIGTERM; what the command created was removed
    CHECK_FAILED = 1  # alias of FAILED, as the CLI says it


class TestbedError(Exception):
    """Base class: the message is shown to the user as it is, on one line where possible."""

    exit_code: int = ExitCode.TESTBED_FAILED
    __test__ = False  # not a pytest test class, despite its name


class InputError(TestbedError):
    """The user's input (a scenario, a template, an argument) is wrong; the message says how to fix it."""

    exit_code = ExitCode.BAD_INPUT


class ScenarioError(InputError):
    """A scenario or router template file has one or more problems, each located by file, line, field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class CapabilityError(TestbedError):
    """This host lacks something the request needs (root, a qdisc, Docker); the message says how to get it."""

    exit_code = ExitCode.MISSING_CAPABILITY


class LabError(TestbedError):
    """Building or driving the emulated network failed for a reason outside the user's input."""

    exit_code = ExitCode.TESTBED_FAILED


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C so every ``finally`` and ``__exit__`` runs."""

    exit_code = ExitCode.INTERRUPTED
