"""A task's result: the JSON value it may write to `/artifacts/.result` (at most 64 KiB).

`when:` conditions of later tasks read it as `tasks.NAME.result`. The executor reads it
after the command exits 0 and sends it with the attempt's report; the scheduler records
it with the task. A result that is not a regular file, too large, or not JSON fails the
attempt (reason InvalidResult): a condition must never decide on a value we could not read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import orjson

RESULT_FILE = ".result"
MAX_RESULT_BYTES = 64 * 1024
INVALID_RESULT = "InvalidResult"


class ResultError(ValueError):
    pass


def read_result(artifacts_dir: Path) -> Any:
    """The task's result, or None when it wrote none."""
    where = f"/artifacts/{RESULT_FILE}"
    try:
        # O_NOFOLLOW: a symlink could point anywhere on the machine reading it.
        fd = os.open(artifacts_dir / RESULT_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                     | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ResultError(f"{where} cannot be read ({exc.strerror}); it must be a regular"
                          " file") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ResultError(f"{where} must be a regular file")
        if info.st_size > MAX_RESULT_BYTES:
            raise ResultError(f"{where} is {info.st_size} bytes; at most {MAX_RESULT_BYTES}")
        data = os.read(fd, MAX_RESULT_BYTES + 1)
    finally:
        os.close(fd)
    return parse_result(data, where)


def parse_result(data: bytes, where: str) -> Any:
    """The result held in `data` (read up to one byte past the bound), or None if blank."""
    if len(data) > MAX_RESULT_BYTES:
        raise ResultError(f"{where} is over {MAX_RESULT_BYTES} bytes")
    if not data.strip():
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ResultError(f"{where} is not JSON: {exc}") from None
