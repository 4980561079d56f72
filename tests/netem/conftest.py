"""netem tests run where sch_netem is: natively when this kernel has it (or when already inside the VM,
``TESTBED_IN_VM=1``), otherwise in one stock-kernel VM per session (``testbed.lab.netemvm``).

Delegation: the first netem test that runs boots the VM (session fixture ``netem_vm``, so only when netem
tests were collected) and runs ``pytest`` on all the collected netem tests inside it, with a JUnit XML
and the full output written to the VM's read-write directory. Each test on the host then reports its
guest counterpart's outcome instead of running (``pytest_pyfunc_call``): pass, fail with the guest's
failure text, skip (a failure in CI). Without a VM: skip locally, fail in CI (``require``).
"""

from __future__ import annotations

import compileall
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import pytest

from testbed.errors import CapabilityError, LabError
from testbed.lab import netemvm
from testbed.lab.impair import netem_works
from tests.helpers import IN_CI, REPO, require

HERE = Path(__file__).resolve().parent
IN_VM = os.environ.get("TESTBED_IN_VM") == "1"
VM_TIMEOUT = float(os.environ.get("TESTBED_VM_TIMEOUT", "1200"))  # the whole guest pytest run, seconds
TAIL_LINES = 40

_GUEST_RUN = pytest.StashKey["GuestRun"]()


@dataclass(frozen=True)
class GuestResult:
    outcome: str  # passed | failed | skipped
    message: str


@dataclass
class GuestRun:
    """What the VM said: per host node id its result, or why there are no results."""

    results: dict[str, GuestResult] = field(default_factory=dict)
    unavailable: str = ""  # the VM cannot be had (require: skip locally, fail in CI)
    error: str = ""  # the VM or the guest's pytest broke
    output: Path | None = None  # the guest's full pytest output
    detail: str = ""
    seconds: float = 0.0
    host_load: float = 0.0  # 1-minute load average of the host when the VM run ended

    def load_note(self) -> str:
        """Timing under TCG suffers when the host's cores are busy with other work (other VMs, builds)."""
        cores = os.cpu_count() or 1
        note = f"host load average {self.host_load:.1f} on {cores} cores at the end of the VM run"
        if self.host_load > cores + 1:  # the VM's own vCPU threads account for up to its CPU count
            note += ": other work competed with the VM, whose timing (netem delays under TCG) needs the cores"
        return note

    def tail(self) -> str:
        if self.output is None or not self.output.exists():
            return "(no guest output)"
        lines = self.output.read_text(errors="replace").splitlines()
        return "\n".join(lines[-TAIL_LINES:])


def _is_netem_item(item: pytest.Item) -> bool:
    return HERE in Path(str(item.fspath)).resolve().parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _is_netem_item(item):
            item.add_marker(pytest.mark.netem)


@pytest.fixture(scope="session")
def netem_mode() -> str:
    """'native' (this kernel runs netem, or this is the VM) or 'vm'."""
    return "native" if IN_VM or netem_works() else "vm"


def _junit_key(nodeid: str) -> tuple[str, str]:
    """A node id as pytest's JUnit XML names it: (classname, name)."""
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


def _read_junit(path: Path) -> dict[tuple[str, str], GuestResult]:
    results = {}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        outcome, messages = "passed", []
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                messages.append(f"[{child.tag}] {child.get('message') or ''}\n{child.text or ''}".strip())
            elif child.tag == "skipped" and outcome == "passed":
                outcome = "skipped"
                messages.append(child.get("message") or "")
        results[(case.get("classname", ""), case.get("name", ""))] = GuestResult(outcome, "\n".join(messages))
    return results


@pytest.fixture(scope="session")
def netem_vm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> GuestRun:
    """Boot the VM once and run every collected netem test in it."""
    ok, detail = netemvm.vm_available()
    if not ok:
        return GuestRun(unavailable=detail)
    rootdir = request.config.rootpath
    items = [item for item in request.session.items if _is_netem_item(item)]
    rwdir = tmp_path_factory.mktemp("netem-vm")
    junit = rwdir / "junit.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        *(str(rootdir / item.nodeid) for item in items),
        f"--rootdir={rootdir}",
        "-p",
        "no:cacheprovider",
        "-v",
        "-rA",
        f"--junitxml={junit}",
    ]
    env = {name: os.environ[name] for name in ("CI",) if name in os.environ}
    env["HYPOTHESIS_STORAGE_DIRECTORY"] = str(rwdir / "hypothesis")  # the checkout is read-only there
    # the guest's root is read-only: compile the project's modules here so that every process there
    # (the probe sender and receiver too) loads bytecode instead of compiling the sources again
    for package in ("testbed", "tests"):
        compileall.compile_dir(REPO / package, quiet=2)
    run = GuestRun(output=rwdir / netemvm.GUEST_LOG, detail=detail)
    request.config.stash[_GUEST_RUN] = run
    started = time.monotonic()
    try:
        returncode = netemvm.run_in_vm(command, rwdir, VM_TIMEOUT, env)
    except CapabilityError as exc:
        del request.config.stash[_GUEST_RUN]
        return GuestRun(unavailable=str(exc))
    except LabError as exc:  # its message has the tails of the console and the guest output
        run.error = str(exc)
        return run
    finally:
        run.seconds = time.monotonic() - started
        run.host_load = os.getloadavg()[0]
    if not junit.exists():
        run.error = (
            f"the guest's pytest wrote no JUnit XML (exit {returncode}); guest output {run.output}:\n{run.tail()}"
        )
        return run
    by_key = _read_junit(junit)
    run.results = {item.nodeid: by_key[_junit_key(item.nodeid)] for item in items if _junit_key(item.nodeid) in by_key}
    return run


@pytest.fixture(autouse=True)
def _netem_where(request: pytest.FixtureRequest, root_required: None, netem_mode: str) -> None:  # noqa: F811
    """Native: nothing to do. VM: make sure the VM ran, and mark this test as answered by it."""
    if netem_mode == "native":
        return
    run = request.getfixturevalue("netem_vm")
    if run.unavailable:
        require("netem VM", False, f"this kernel has no sch_netem, and {run.unavailable}")
    request.node.stash[_GUEST_RUN] = run


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    run = pyfuncitem.stash.get(_GUEST_RUN, None)
    if run is None:
        return None  # runs here, natively
    where = f"in the netem VM ({run.detail}; {run.load_note()}); full guest output: {run.output}"
    if run.error:
        pytest.fail(run.error, pytrace=False)
    result = run.results.get(pyfuncitem.nodeid)
    if result is None:
        pytest.fail(f"no result for this test {where}\n--- tail of the guest output ---\n{run.tail()}", pytrace=False)
    if result.outcome == "failed":
        pytest.fail(f"failed {where}\n{result.message}\n--- tail of the guest output ---\n{run.tail()}", pytrace=False)
    if result.outcome == "skipped":
        if IN_CI:
            pytest.fail(f"skipped {where}: {result.message} (CI provides netem, so this is a failure)", pytrace=False)
        pytest.skip(f"skipped {where}: {result.message}")
    return True


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash.get(_GUEST_RUN, None)
    if run is None:
        return
    counts: dict[str, int] = {}
    for result in run.results.values():
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no results"
    terminalreporter.write_line(
        f"netem tests ran in a stock-kernel VM ({run.detail}) in {run.seconds:.0f}s: "
        f"{summary}; {run.load_note()}; guest output {run.output}"
    )
