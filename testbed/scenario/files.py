"""Reading the files a scenario names (the scenario itself, router templates, traces, speech WAVs) as what
they claim to be: a regular file of bounded size, opened read-only. A scenario that names /dev/zero, a
FIFO or a directory gets an error, never a hang or a run that reads without end."""

from __future__ import annotations

import os
import stat
from pathlib import Path

# generous bounds for hand-written or recorded inputs; a file beyond them is not what it claims to be
MAX_TEXT_BYTES = 16 << 20  # a scenario, a template, a trace
MAX_WAV_BYTES = 64 << 20  # 60 s of 48 kHz 16-bit stereo is 11.5 MB


class InputFileError(ValueError):
    """The named file is missing, not a regular file, or too large; the message says which."""


def read_input_file(path: Path | str, limit: int = MAX_TEXT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes. Opened without blocking (a FIFO opened for
    reading would wait for a writer) and checked on the open descriptor, so what is read is what was checked."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputFileError("no such file") from None
    except OSError as exc:
        raise InputFileError(f"cannot open it: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a device, FIFO or socket"
            raise InputFileError(f"{kind}, not a regular file")
        if info.st_size > limit:
            raise InputFileError(f"{info.st_size} bytes, more than the {limit >> 20} MiB such a file can have")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(limit + 1)
        if len(data) > limit:  # grew while being read
            raise InputFileError(f"more than the {limit >> 20} MiB such a file can have")
        return data
    except OSError as exc:
        raise InputFileError(f"cannot read it: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_input_text(path: Path | str, limit: int = MAX_TEXT_BYTES) -> str:
    """``read_input_file`` as UTF-8 text."""
    try:
        return read_input_file(path, limit).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"not UTF-8 text (byte {exc.start})") from None
