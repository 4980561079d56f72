"""The base of every result file's model: plain JSON data, validated when read, versioned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from testbed.errors import InputError


class Record(BaseModel):
    """A part of a result file. Unknown keys are refused so a typo in a writer fails a test, not a reader."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResultFile(Record):
    """A whole result file: carries its schema version and knows how to be read and written."""

    schema_version: int = 1

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read and validate a file; a missing or damaged file is bad input, said with its path."""
        try:
            data: Any = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(top level)"
            raise InputError(f"{path}: {where}: {first['msg']} (a {cls.__name__} file)") from None

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        try:  # whole or not at all: a full disk must not leave half a file for scoring to choke on
            partial.write_text(self.model_dump_json(indent=1, by_alias=True))
            partial.replace(path)
        except OSError as exc:
            if exc.filename is None:  # a write that failed after the open names no file: say which
                raise OSError(exc.errno, exc.strerror, str(path)) from exc
            raise
        finally:
            partial.unlink(missing_ok=True)
        return path
