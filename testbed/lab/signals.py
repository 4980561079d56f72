"""Signal handlers installed for the length of a ``with`` block, restored after it.

Only the main thread may set handlers; elsewhere the block runs with the process's handlers as they are
(a lab built on a worker thread cannot be interrupted by a signal, only torn down by its owner).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from types import FrameType
from typing import Any

from testbed.errors import Interrupted

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers
TERMINATING = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def handled(handlers: Mapping[signal.Signals, Handler]) -> Iterator[None]:
    """Install ``handlers`` while inside (on the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"received {signal.Signals(signum).name}")


def signals_raise() -> AbstractContextManager[None]:
    """While inside, SIGTERM and SIGHUP unwind like Ctrl-C."""
    return handled(dict.fromkeys(TERMINATING, _raise_interrupted))


def signals_ignored() -> AbstractContextManager[None]:
    """Teardown must finish: a second Ctrl-C or SIGTERM is ignored while inside."""
    return handled(dict.fromkeys((signal.SIGINT, *TERMINATING), signal.SIG_IGN))
