"""The child-process plumbing: JSON-lines events both ways, ending a child, stop signals, real-time class."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from testbed.proc import (
    AGENT,
    ENGINE,
    RealTime,
    decode,
    emit,
    follow,
    next_event,
    parse_events,
    parse_line,
    set_realtime,
    stop_child,
    stop_process,
    write_message,
)
from tests.helpers import REPO


def python(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, **kwargs)


def test_write_message_is_one_compact_line():
    out = io.StringIO()
    assert write_message({"event": "ready", "port": 5}, out)
    assert out.getvalue() == '{"event":"ready","port":5}\n'


def test_a_reader_that_went_away_is_no_reason_to_fail():
    closed = io.StringIO()
    closed.close()
    assert write_message({"event": "stats"}, closed) is False


def test_emit_writes_to_stdout(capsys):
    emit("done", bytes=3)
    assert capsys.readouterr().out == '{"event":"done","bytes":3}\n'


def test_decode_takes_only_json_objects():
    assert decode('{"id": 1, "ok": true}\n') == {"id": 1, "ok": True}
    assert decode(b'{"event": "ready"}') == {"event": "ready"}
    assert decode("[1, 2]") is None and decode("Traceback (most recent call last):") is None
    assert decode("   \n") is None


def test_other_output_becomes_an_output_event():
    assert parse_line("OSError: [Errno 98] Address in use\n") == {
        "event": "output",
        "text": "OSError: [Errno 98] Address in use",
    }
    assert parse_line('{"no_event": 1}') == {"event": "output", "text": '{"no_event": 1}'}
    assert parse_line("\n") is None


def test_parse_events_accepts_lines_and_relayed_events():
    events = parse_events(['{"event": "ready"}', "", {"event": "done", "bytes": 1}, b"oops"])
    assert events == [{"event": "ready"}, {"event": "done", "bytes": 1}, {"event": "output", "text": "oops"}]


def test_follow_drains_a_child_and_says_when_it_ended():
    child = python(
        """
        print('{"event": "ready"}')
        print("a line that is not JSON")
        print('{"id": 1, "ok": true}', flush=True)
        """,
        stdout=subprocess.PIPE,
        text=True,
    )
    messages, texts, ended = [], [], threading.Event()
    assert child.stdout is not None
    thread = follow(child.stdout, messages.append, name="test", on_text=texts.append, on_end=ended.set)
    assert ended.wait(10)
    thread.join(5)
    child.wait(5)
    assert messages == [{"event": "ready"}, {"id": 1, "ok": True}]
    assert texts == ["a line that is not JSON"]


def test_next_event_skips_blank_lines_and_times_out():
    async def scenario() -> tuple:
        reader = asyncio.StreamReader()
        reader.feed_data(b'\n{"event": "ready", "pid": 7}\nnot json\n')
        first = await next_event(reader, timeout=1)
        second = await next_event(reader, timeout=1)
        nothing = await next_event(reader, timeout=0.05)
        reader.feed_eof()
        return first, second, nothing, await next_event(reader)

    first, second, nothing, end = asyncio.run(scenario())
    assert first == {"event": "ready", "pid": 7}
    assert second == {"event": "output", "text": "not json"}
    assert nothing is None and end is None


def test_stop_process_terminates_a_child_that_listens():
    child = python("import time; time.sleep(60)")
    assert stop_process(child, 5) == -signal.SIGTERM


def test_stop_process_kills_a_child_that_ignores_sigterm():
    child = python(
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring", flush=True)
        time.sleep(60)
        """,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ignoring"
    started = time.monotonic()
    assert stop_process(child, 0.3) == -signal.SIGKILL
    assert time.monotonic() - started < 5


def test_stop_process_without_terminate_waits_then_kills():
    finishing = python("import time; time.sleep(0.1)")
    assert stop_process(finishing, 10, terminate=False) == 0
    stuck = python("import time; time.sleep(60)")
    assert stop_process(stuck, 0.1, terminate=False) == -signal.SIGKILL
    assert stop_process(stuck, 0.1) == -signal.SIGKILL  # already gone: just its status


def test_stop_child_ends_an_asyncio_child():
    async def scenario() -> int | None:
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
        return await stop_child(process, 5)

    assert asyncio.run(scenario()) == -signal.SIGTERM


def test_stop_signals_wake_a_sleeping_process_at_once():
    child = python(
        """
        import time
        from testbed.proc import StopSignals, emit
        stop = StopSignals()
        emit("ready")
        started = time.monotonic()
        stop.sleep(30)
        emit("done", requested=stop.requested, slept=time.monotonic() - started)
        """,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert decode(child.stdout.readline()) == {"event": "ready"}
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=10)
    done = decode(out)
    assert child.returncode == 0 and done is not None
    assert done["requested"] is True and done["slept"] < 5


def test_stop_signals_run_the_handler_and_wake_a_select():
    child = python(
        """
        import select
        from testbed.proc import StopSignals, emit
        calls = []
        stop = StopSignals(lambda: calls.append(1))
        emit("ready")
        readable, _, _ = select.select([stop.fileno()], [], [], 30)
        stop.drain()
        emit("done", woke=bool(readable), calls=len(calls))
        """,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and decode(child.stdout.readline()) == {"event": "ready"}
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=10)
    assert decode(out) == {"event": "done", "woke": True, "calls": 1}


def test_engines_run_above_agents():
    assert ENGINE.priority > AGENT.priority
    assert (ENGINE.marker, AGENT.marker) == ("testbed.lab.engine", "testbed.media.agent")


def test_set_realtime_resets_on_fork():
    """In a child, so the test process keeps its class; skipped where the kernel refuses."""
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import os, subprocess, sys
                from testbed.proc import RealTime, set_realtime
                if not set_realtime(RealTime("x", os.SCHED_FIFO, 3, "x")):
                    sys.exit(3)
                grandchild = subprocess.run([sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"],
                                            capture_output=True, text=True)
                print(os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK, os.sched_getparam(0).sched_priority,
                      grandchild.stdout.strip())
                """
            ),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    if child.returncode == 3:
        pytest.skip("no permission for a real-time class here")
    assert child.returncode == 0, child.stderr
    policy, priority, grandchild = (int(v) for v in child.stdout.split())
    assert (policy, priority) == (os.SCHED_FIFO, 3)
    assert grandchild == os.SCHED_OTHER, "children start at normal priority"


def test_set_realtime_says_when_refused():
    assert set_realtime(RealTime("x", os.SCHED_FIFO, 1, "x"), pid=2**22 + 12345) is False  # no such process
