"""The fork server's own process (``python -m testbed.lab.zygote FD``): imports what the lab's agents (and
their taps and traffic processes) need once, then forks each of them into its node on request and
reports its exit.
The harness's side, and why, is ``testbed.lab.forkserver``.
"""

from __future__ import annotations

import gc
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

from testbed.proc import AGENT, FORK_FD_ENV

MAX_FDS = 4  # namespace, stdin, stdout, stderr


@dataclass(frozen=True)
class Entry:
    """A program the server runs: ``module:function(argv) -> exit status``; ``comm`` is the process
    name the child takes (``/proc/PID/comm``), by which ``testbed.lab.priority`` finds it."""

    module: str
    function: str
    comm: str
    channel: bool = False  # the child gets its own line to the server (FORK_FD_ENV) for its children


# keyed by the module a ``python -m`` command line names (testbed.proc's markers)
ENTRIES = {
    AGENT.marker: Entry("testbed.media.agent", "main", AGENT.comm, channel=True),
    # not the impairment engines: they decide the network's timing, and forked from this server's large
    # heap they released packets late (> 1 ms) twice as often as fresh interpreters (office, 5 runs each)
    # the agents' children: packet taps and cross traffic
    "testbed.media.tap": Entry("testbed.media.tap.capture", "main", "vtb-tap"),
    "testbed.media.traffic": Entry("testbed.media.traffic.cli", "main", "vtb-traffic"),
}
# imported once by the server, so no child imports them again (what the endpoints load lazily too)
ENCODER = ("numpy", "opuslib_next", "testbed.media.encoded_clip")  # first: a preload can start early
WARM = (
    "testbed.lab.netns",
    "testbed.media.agent",
    "testbed.media.endpoints",
    "testbed.media.endpoints.aiortc",
    "testbed.media.endpoints.rtp",
    "testbed.media.endpoints.chromium",
    "testbed.media.signalling",
    "testbed.media.tap.capture",
    "testbed.media.traffic.cli",
    "aiortc",
)


def _run_child(entry: Entry, request: dict[str, Any], fds: list[int], channel: int | None) -> int:
    """In the forked child: become the program in its node, as ``python -m`` would have started it.
    Always in a session of its own: a terminal's Ctrl-C is the harness's to handle, never a child's."""
    from testbed.lab.netns import setns_fd

    argv, env = request["argv"], dict(request["env"])
    netns_fd, stdin, stdout, stderr = fds
    os.setsid()
    setns_fd(netns_fd)
    for target, fd in enumerate((stdin, stdout, stderr)):
        os.dup2(fd, target)
    if channel is not None:
        os.dup2(channel, 3)
        env[FORK_FD_ENV] = "3"
    os.closerange(3 if channel is None else 4, os.sysconf("SC_OPEN_MAX"))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    _set_comm(entry.comm)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - the process's own stdio
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    os.environ.clear()
    os.environ.update(env)
    os.chdir(request["cwd"])
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


def _spawn(request: dict[str, Any], fds: list[int]) -> tuple[int, socket.socket | None]:
    """Fork the requested program; its pid, and the server's end of its own line (``Entry.channel``)."""
    entry = ENTRIES[request["entry"]]
    gc.freeze()  # the server's objects out of the child's collections: no copy-on-write of every page mid-call
    if len(fds) != MAX_FDS:
        raise ValueError(f"a spawn takes {MAX_FDS} descriptors, not {len(fds)}")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) if entry.channel else (None, None)
    try:
        pid = os.fork()
    except OSError:
        for end in (ours, theirs):
            if end is not None:
                end.close()
        raise
    if pid == 0:
        code = 1
        try:
            code = _run_child(entry, request, fds, theirs.fileno() if theirs is not None else None)
        finally:
            os._exit(code)
    if theirs is not None:
        theirs.close()
    return pid, ours


_asked: set[str] = set()  # clips already being encoded: the CLI and the runner both ask


def _start_preload(request: dict[str, Any]) -> None:
    """Encode the clips asked for that no earlier request asked for, on a thread (``_preload``)."""
    keyed = {json.dumps(clip): clip for clip in request["clips"]}
    new = [clip for key, clip in keyed.items() if key not in _asked]
    _asked.update(keyed)
    if new:
        threading.Thread(target=_preload, args=(new,), daemon=True).start()


def _early_preload(control: socket.socket) -> None:
    """While warming up: if the harness's next message is a preload, start it now rather than after
    every import (the first agents wait for their clips, not for the server's imports). Anything else
    stays queued for the loop."""
    try:
        message = control.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, OSError):
        return
    request = json.loads(message) if message else {}
    if request.get("op") == "preload":
        control.recv(1 << 20)
        _start_preload(request)


def _preload(clips: list[list[Any]]) -> None:
    """Encode the run's clips ([codec, clip, opus settings]) while the harness builds the lab: each agent
    forked afterwards has them in memory (``encoded_clip`` keeps them per process) and prepares at once;
    one forked before a clip is done encodes it itself. Runs on a thread of its own, so an agent's
    spawn never waits for it: a fork copies only the forking thread, and ``encoded_clip`` stores
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
    # a terminal's Ctrl-C, a hang-up or a SIGTERM to the whole process group (`timeout`) is the harness's
    # to handle: it unwinds its labs, and its children must still be told apart; the server ends with it
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    failed = []
    for index, module in enumerate((*ENCODER, *WARM)):
        if index >= len(ENCODER):
            _early_preload(control)
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
    """Serve the harness and the agents' lines; each child's exit goes to whoever asked for it, with the
    CPU it used (an agent counts its children's CPU; they are not its children in the kernel's eyes)."""
    clients = {control.fileno(): control}  # the harness's line and each agent's
    children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> pid, who asked for it
    while True:
        readable, _, _ = select.select([*clients, *children], [], [])
        for fd in readable:
            if fd in clients:
                client = clients[fd]
                try:
                    message, fds, _, _ = socket.recv_fds(client, 1 << 20, MAX_FDS)
                except OSError:
                    message, fds = b"", []
                if not message:
                    if client is control:
                        return  # the harness is gone
                    del clients[fd]  # an agent ended
                    client.close()
                    continue
                request = json.loads(message)
                if request.get("op") == "preload":  # beside the spawns, which must not wait for it
                    _start_preload(request)
                    continue
                try:
                    pid, line = _spawn(request, fds)
                    children[os.pidfd_open(pid)] = (pid, client)
                    if line is not None:
                        clients[line.fileno()] = line
                    reply: dict[str, Any] = {"id": request["id"], "pid": pid}
                except Exception as exc:  # noqa: BLE001 - the requester says it
                    reply = {"id": request["id"], "error": f"{type(exc).__name__}: {exc}"}
                finally:
                    for received in fds:
                        os.close(received)  # the child has them; the server must not hold a namespace
                _send(client, reply, control)
            else:
                pid, client = children.pop(fd)
                _, status, usage = os.wait4(pid, 0)
                os.close(fd)
                cpu = round(usage.ru_utime + usage.ru_stime, 3)
                _send(client, {"exit": pid, "code": os.waitstatus_to_exitcode(status), "cpu_s": cpu}, control)


def _send(client: socket.socket, message: dict[str, Any], control: socket.socket) -> None:
    """A reply or exit report. An agent that has gone no longer needs it; the harness always does (a
    failure to reach it ends the server: ``serve``)."""
    try:
        client.send(json.dumps(message).encode())
    except OSError:
        if client is control:
            raise


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
