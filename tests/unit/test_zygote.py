"""The fork server's clip preloading (pure parts, over a real socket pair): a preload is started while
the server still warms up, never twice for the same clip, and any other message waits for the loop."""

import json
import socket
import threading

import pytest

from testbed.lab import zygote


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[list[list[object]]]:
    """What the server's preload threads were asked to encode (each call's clips)."""
    calls: list[list[list[object]]] = []

    def record(clips: list[list[object]]) -> None:
        calls.append(clips)

    monkeypatch.setattr(zygote, "_preload", record)
    monkeypatch.setattr(zygote, "_asked", set())
    return calls


def pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def preload(*clips: list[object]) -> bytes:
    return json.dumps({"op": "preload", "clips": list(clips)}).encode()


def settle() -> None:
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.daemon:
            thread.join(1.0)


def test_a_preload_waiting_during_warm_up_starts_at_once(encoded):
    server, harness = pair()
    harness.send(preload(["opus", "client", [32000, True, 0]]))
    zygote._early_preload(server)
    settle()
    assert encoded == [[["opus", "client", [32000, True, 0]]]]
    server.setblocking(False)
    with pytest.raises(BlockingIOError):
        server.recv(1 << 16)  # consumed


def test_another_message_is_left_for_the_loop(encoded):
    server, harness = pair()
    spawn = json.dumps({"id": 1, "entry": "agent"}).encode()
    harness.send(spawn)
    harness.send(preload(["opus", "client", [32000, True, 0]]))
    zygote._early_preload(server)
    settle()
    assert encoded == []
    assert server.recv(1 << 16) == spawn  # in order, untouched


def test_nothing_waiting_is_not_an_error(encoded):
    server, _harness = pair()
    zygote._early_preload(server)
    assert encoded == []


def test_a_clip_asked_for_twice_is_encoded_once(encoded):
    zygote._start_preload({"clips": [["opus", "client", [32000, True, 0]], ["pcmu", "client", []]]})
    zygote._start_preload({"clips": [["opus", "client", [32000, True, 0]], ["opus", "gateway", [32000, True, 0]]]})
    settle()
    assert encoded == [
        [["opus", "client", [32000, True, 0]], ["pcmu", "client", []]],
        [["opus", "gateway", [32000, True, 0]]],
    ]
