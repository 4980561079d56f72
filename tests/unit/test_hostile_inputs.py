"""A scenario written to do harm: every file it names is read only as what it claims to be, a tc script
runs only tc on the router's own queues, names never become paths, and only the fields that name files
are read as files. Each rule fails fast with the input error (exit 2), never a hang."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from testbed.errors import InputError
from testbed.scenario import load_scenario
from testbed.scenario.files import InputFileError, read_input_file
from testbed.scenario.fingerprint import plan_fingerprint
from testbed.scenario.router_template import RouterTemplate
from tests.helpers.cli import run_cli

TRACE_LINK = "name: hostile\nlinks: {wan: {router: {trace: %s}}}\n"


def load_within(path: Path, seconds: float = 5.0) -> BaseException | None:
    """Load the scenario in a thread: what it raised, or a failure if it has not answered in time."""
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            load_scenario(path)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"loading {path} did not answer within {seconds} s")
    return outcome[0]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.csv"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "fifo", "directory", "/proc/self/mem"])
def test_a_trace_is_read_only_as_a_regular_text_file(tmp_path, fifo, target):
    path = {"fifo": str(fifo), "directory": str(tmp_path)}.get(target, target)
    scenario = tmp_path / "hostile.yaml"
    scenario.write_text(TRACE_LINK % path)
    error = load_within(scenario)
    assert isinstance(error, InputError), error
    assert "links.wan.router.trace" in str(error) and "cannot read the trace" in str(error), error


def test_a_scenario_file_that_is_a_device_or_fifo_is_refused_at_once(fifo):
    for path in (Path("/dev/zero"), fifo):
        error = load_within(path)
        assert isinstance(error, InputError) and "not a regular file" in str(error), error


def test_a_speech_reference_is_read_only_as_a_wav_file(tmp_path, fifo):
    for path in ("/dev/zero", str(fifo)):
        scenario = tmp_path / "speech.yaml"
        scenario.write_text(f"name: speech\ncalls: [{{from: client, to: gateway, speech: {{from: {path}}}}}]\n")
        error = load_within(scenario)
        assert isinstance(error, InputError) and "not a regular file" in str(error), error


def test_an_oversized_input_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.csv"
    with big.open("wb") as f:
        f.truncate(64 << 20)  # sparse: nothing is written, the size is what is checked
    with pytest.raises(InputFileError, match="more than the 16 MiB"):
        read_input_file(big)


@pytest.mark.parametrize(
    ("line", "refused"),
    [
        ("tc exec bpf import /tmp/x run /bin/sh", "tc exec is not allowed"),
        ("tc monitor", "tc monitor is not allowed"),
        ("tc -batch /etc/shadow", "option '-batch' is not allowed"),
        ("tc -b /etc/shadow", "option '-b' is not allowed"),
        ("tc -netns other qdisc del dev eth0 root", "option '-netns' is not allowed"),
        ("tc -n other qdisc del dev eth0 root", "option '-n' is not allowed"),
        ("tc -cf /etc/passwd qdisc show", "option '-cf' is not allowed"),
        ("tc q add dev {wan} root pfifo", "written in full"),
        ("/sbin/tc qdisc add dev {wan} root pfifo", "only tc commands"),
        ("tc qdisc add dev {wan} root pfifo; rm -rf /", None),  # no shell: ';' and what follows are tc's args
        ('tc qdisc add dev "{wan}', "No closing quotation"),
    ],
)
def test_a_tc_script_runs_only_tc_on_the_routers_queues(line, refused):
    document = {"kind": "tc-script", "script": line}
    if refused is None:
        assert RouterTemplate.model_validate(document).script == line
        return
    with pytest.raises(ValidationError, match=refused):
        RouterTemplate.model_validate(document)


def test_options_that_only_change_tcs_output_are_allowed():
    RouterTemplate.model_validate({"kind": "tc-script", "script": "tc -s -d qdisc show dev {wan}"})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "../../etc"),
        ("variants", "{../../tmp/x: {}}"),
        ("calls", "[{name: ../../x, from: client, to: gateway}]"),
        ("traffic", "[{name: a/b, kind: udp_cbr, from: client, to: gateway, rate: 1mbit}]"),
        ("topology", "{nodes: {../x: {}}}"),
        ("topology", "{nodes: {averyveryverylongname: {}}}"),
    ],
)
def test_names_that_would_become_paths_or_interfaces_are_refused(tmp_path, field, value):
    scenario = tmp_path / "names.yaml"
    text = f"{field}: {value}\n" + ("name: names\n" if field != "name" else "")
    scenario.write_text(text)
    error = load_within(scenario)
    assert isinstance(error, InputError), (field, error)
    assert "not a valid" in str(error) or "name" in str(error), error


def test_only_the_fields_that_name_files_are_read_as_files(tmp_path):
    """A description that happens to be a path is text: the fingerprint never reads that file (its content
    changing leaves the fingerprint alone), while a trace counts by its content."""
    secret, trace = tmp_path / "secret", tmp_path / "trace.csv"
    scenario = tmp_path / "describe.yaml"
    scenario.write_text(f"name: describe\ndescription: {secret}\nlinks: {{wan: {{router: {{trace: {trace}}}}}}}\n")
    prints = []
    for content, delay in (("top secret", 10), ("another secret", 10), ("another secret", 20)):
        secret.write_text(content)
        trace.write_text(f"time_s,delay_ms\n0,{delay}\n")
        prints.append(plan_fingerprint(load_scenario(scenario)))
    assert prints[0] == prints[1], "the fingerprint read a file named only in a description"
    assert prints[1] != prints[2], "the trace's content must count"


def test_the_cli_says_a_hostile_trace_in_one_line_with_exit_2(tmp_path):
    scenario = tmp_path / "hostile.yaml"
    scenario.write_text(TRACE_LINK % "/dev/zero")
    result = run_cli("validate", str(scenario))
    assert result.returncode == 2
    assert "a device, FIFO or socket, not a regular file" in result.stderr
