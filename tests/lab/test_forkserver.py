"""The fork server: children forked into a real namespace, with the Popen interface their callers use;
exit statuses, signals, real-time promotion by name, and nothing held or left when it ends."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.lab import forkserver, netns
from testbed.lab.priority import promote
from testbed.proc import AGENT, ENGINE


@pytest.fixture
def namespace() -> Iterator[Path]:
    name = f"vtb-fs{uuid.uuid4().hex[:6]}"
    path = netns.create(name)
    try:
        yield path
    finally:
        netns.remove(name)


def _agent(server: forkserver.ForkServer, path: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", AGENT.marker, "--node", "n1"]
    kwargs = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    assert server.handles(argv, kwargs)
    return server.spawn(path, argv, bufsize=1, start_new_session=True, **kwargs)


def test_an_agent_is_forked_into_the_namespace_and_speaks_on_its_pipes(namespace: Path) -> None:
    with forkserver.serving() as server:
        assert server is not None
        agent = _agent(server, namespace)
        assert agent.stdout is not None and agent.stdin is not None
        assert '"ready"' in agent.stdout.readline()
        assert os.stat(f"/proc/{agent.pid}/ns/net").st_ino == os.stat(namespace).st_ino
        assert Path(f"/proc/{agent.pid}/comm").read_text().strip() == AGENT.comm
        assert os.getsid(agent.pid) == agent.pid  # start_new_session: a terminal's Ctrl-C is the harness's
        assert promote(namespace, AGENT) == 1  # found by its name, as the harness finds a container's
        assert os.sched_getscheduler(agent.pid) & ~os.SCHED_RESET_ON_FORK == AGENT.policy
        agent.stdin.write('{"id": 1, "cmd": "usage", "args": {}}\n')
        agent.stdin.flush()
        assert '"id":1' in agent.stdout.readline().replace(" ", "")
        agent.stdin.close()  # the agent's way to finish
        assert agent.wait(10) == 0
        assert agent.poll() == 0
        server_pid = server.process.pid
        held = [os.readlink(f"/proc/{server_pid}/fd/{fd}") for fd in os.listdir(f"/proc/{server_pid}/fd")]
        assert not any("net:" in target for target in held)  # the server holds no namespace open
    assert server.process.poll() is not None  # ended with the context
    assert forkserver.current() is None


def _ask(agent: subprocess.Popen[str], request_id: int, cmd: str, **args: object) -> dict:
    assert agent.stdin is not None and agent.stdout is not None
    agent.stdin.write(json.dumps({"id": request_id, "cmd": cmd, "args": args}) + "\n")
    agent.stdin.flush()
    while True:
        message = json.loads(agent.stdout.readline())
        if message.get("id") == request_id:
            assert message["ok"], message
            return message["result"]


def test_an_agents_children_are_forked_too_and_their_cpu_counted(namespace: Path) -> None:
    with forkserver.serving() as server:
        assert server is not None
        agent = _agent(server, namespace)
        assert agent.stdout is not None and '"ready"' in agent.stdout.readline()
        sink = [sys.executable, "-m", "testbed.media.traffic", "sink", "--kind", "udp", "--port", "5100"]
        started = _ask(agent, 1, "child_start", name="sink", argv=[*sink, "--flows", "1", "--report-every", "0.2"])
        pid = started["pid"]
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "vtb-traffic"
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(namespace).st_ino
        assert os.getsid(pid) == pid  # never in a terminal's foreground group
        assert "TESTBED_FORK_FD" not in Path(f"/proc/{pid}/environ").read_text()
        time.sleep(0.5)
        stopped = _ask(agent, 2, "child_stop", name="sink")
        assert stopped["code"] == 0 and stopped["reports"]  # its report lines came through the pipe
        assert not Path(f"/proc/{pid}").exists()
        assert _ask(agent, 3, "usage")["children_cpu_s"] > 0  # the server told the agent its child's CPU
        assert agent.stdin is not None
        agent.stdin.close()
        assert agent.wait(10) == 0


def test_a_killed_child_reports_its_signal_and_signals_never_reach_a_reused_pid(namespace: Path) -> None:
    with forkserver.serving() as server:
        assert server is not None
        traffic = server.spawn(
            namespace,
            [sys.executable, "-m", "testbed.media.traffic", "--no-such-option"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert traffic.wait(10) == 2  # argparse's own error, as a fresh process would give
        assert traffic.stdout is not None and "error: " in traffic.stdout.read()
        agent = _agent(server, namespace)
        agent.kill()
        assert agent.wait(10) == -signal.SIGKILL
        agent.terminate()  # after its end: a no-op, never a signal to whatever has that pid now
        with pytest.raises(subprocess.TimeoutExpired):
            _agent(server, namespace).wait(0.2)


def test_other_programs_and_options_take_the_popen_path() -> None:
    server = forkserver.ForkServer()
    try:
        assert not server.handles([sys.executable, "-m", "http.server"], {})
        assert not server.handles(["tc", "qdisc"], {})
        assert not server.handles([sys.executable, "-m", AGENT.marker], {"env": {}})
        assert not server.handles([sys.executable, "-m", ENGINE.marker, "{}"], {})  # engines: fresh interpreters
        assert server.handles([sys.executable, "-m", AGENT.marker, "--node", "n"], {"stderr": subprocess.STDOUT})
    finally:
        server.close()


def test_a_sigterm_to_the_process_group_leaves_the_server_to_its_harness(namespace: Path) -> None:
    """`timeout` or a closed terminal signals the whole group: the harness unwinds, the server serves on."""
    with forkserver.serving() as server:
        assert server is not None
        agent = _agent(server, namespace)  # warmed up and serving
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            os.kill(server.process.pid, signum)
        time.sleep(0.2)
        assert server.process.poll() is None
        assert agent.stdin is not None
        agent.stdin.close()
        assert agent.wait(10) == 0  # its exit still reported
        another = _agent(server, namespace)  # and it still forks
        assert another.stdin is not None and another.poll() is None
        another.stdin.close()
        assert another.wait(10) == 0


def test_the_server_ends_when_its_harness_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    harness = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import time
                from testbed.lab import forkserver
                server = forkserver.ForkServer()
                open({str(pid_file)!r}, "w").write(str(server.process.pid))
                time.sleep(60)
            """),
        ]
    )
    try:
        deadline = time.monotonic() + 10
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server_pid = int(pid_file.read_text())
        harness.kill()
        harness.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{server_pid}").exists() and "Z" not in _state(server_pid):
            assert time.monotonic() < deadline, "the fork server outlived its harness"
            time.sleep(0.05)
    finally:
        if harness.poll() is None:
            harness.kill()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "Z"
