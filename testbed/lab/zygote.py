"""The fork server's own process (``python -m testbed.lab.zygote FD``): imports what the lab's agents and
engines need once, then forks each of them into its node on the harness's request and reports its exit.
The harness's side, and why, is ``testbed.lab.forkserver``.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any

from testbed.proc import AGENT, ENGINE

MAX_FDS = 4  # namespace, stdin, stdout, stderr


@dataclass(frozen=True)
class Entry:
    """A program the server runs: ``module:function(argv) -> exit status``; ``comm`` is the process
    name the child takes (``/proc/PID/comm``), by which ``testbed.lab.priority`` finds it."""

    module: str
    function: str
    comm: str


# keyed by the module a ``python -m`` command line names (testbed.proc's markers)
ENTRIES = {
    AGENT.marker: Entry("testbed.media.agent", "main", AGENT.comm),
    ENGINE.marker: Entry("testbed.lab.engine.engine", "main", ENGINE.comm),
}
# imported once by the server, so no child imports them again (what the endpoints load lazily too)
WARM = (
    "numpy",
    "testbed.lab.netns",
    "testbed.media.agent",
    "testbed.lab.engine.engine",
    "testbed.media.endpoints",
    "testbed.media.endpoints.aiortc",
    "testbed.media.endpoints.rtp",
    "testbed.media.endpoints.chromium",
    "testbed.media.encoded_clip",
    "opuslib_next",
    "testbed.media.signalling",
    "aiortc",
)


def _run_child(entry: Entry, argv: list[str], env: dict[str, str], cwd: str, fds: list[int], session: bool) -> int:
    """In the forked child: become the program in its node, as ``python -m`` would have started it."""
    from testbed.lab.netns import setns_fd

    netns_fd, stdin, stdout, stderr = fds
    if session:
        os.setsid()
    setns_fd(netns_fd)
    for target, fd in enumerate((stdin, stdout, stderr)):
        os.dup2(fd, target)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _set_comm(entry.comm)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - the process's own stdio
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = [entry.module, *argv]
    main = getattr(importlib.import_module(entry.module), entry.function)
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # noqa: BLE001 - printed where a fresh interpreter would print it
        import traceback

        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return code if isinstance(code, int) else (0 if code is None else 1)


def _set_comm(name: str) -> None:
    import ctypes

    PR_SET_NAME = 15
    ctypes.CDLL(None).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _spawn(request: dict[str, Any], fds: list[int]) -> int:
    entry = ENTRIES[request["entry"]]
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _run_child(entry, request["argv"], request["env"], request["cwd"], fds, request["session"])
        finally:
            os._exit(code)
    return pid


def _preload(clips: list[list[Any]]) -> None:
    """Encode the run's clips ([codec, clip, opus settings]) while the harness builds the lab: each agent
    forked afterwards has them in memory (``encoded_clip`` keeps them per process) and prepares at once;
    one forked before a clip is done encodes it itself. Runs on a thread of its own, so an engine's or
    agent's spawn never waits for it: a fork copies only the forking thread, and ``encoded_clip`` stores
    a clip only once it is whole (the encoder, ``opuslib_next``, is imported beforehand, so the thread
    holds no import lock). A clip that fails here fails again, with its message, in the agent that
    needs it."""
    from testbed.media.encoded_clip import encoded_clip, opus_settings

    for codec, clip, opus in clips:
        try:
            encoded_clip(codec, clip, opus_settings(opus))
        except Exception:  # noqa: BLE001, S112 - see the docstring
            continue


def serve(control: socket.socket) -> None:
    """The server's loop: warm up, say ready, then spawn on request and report exits until the harness's
    end of the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the harness's to handle
    failed = []
    for module in WARM:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - a missing optional part costs its child an import, no more
            failed.append(f"{module}: {exc}")
    try:
        control.send(json.dumps({"ready": True, "warm_failed": failed}).encode())
        _loop(control)
    except OSError:
        return  # the harness is gone (a broken pipe on a reply)


def _loop(control: socket.socket) -> None:
    children: dict[int, int] = {}  # pidfd -> pid
    while True:
        readable, _, _ = select.select([control.fileno(), *children], [], [])
        for fd in readable:
            if fd == control.fileno():
                message, fds, _, _ = socket.recv_fds(control, 1 << 20, MAX_FDS)
                if not message:
                    return  # the harness is gone
                request = json.loads(message)
                if request.get("op") == "preload":  # beside the spawns, which must not wait for it
                    threading.Thread(target=_preload, args=(request["clips"],), daemon=True).start()
                    continue
                try:
                    pid = _spawn(request, fds)
                    children[os.pidfd_open(pid)] = pid
                    reply: dict[str, Any] = {"id": request["id"], "pid": pid}
                except Exception as exc:  # noqa: BLE001 - the harness says it
                    reply = {"id": request["id"], "error": f"{type(exc).__name__}: {exc}"}
                finally:
                    for received in fds:
                        os.close(received)  # the child has them; the server must not hold a namespace
                control.send(json.dumps(reply).encode())
            else:
                pid = children.pop(fd)
                _, status = os.waitpid(pid, 0)
                os.close(fd)
                control.send(json.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status)}).encode())


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
