"""Query parameters every route reads the same way."""

from __future__ import annotations

import re

from aiohttp import web

from services.api.problems import Problem

# ASCII digits only: int() would also take "+5", " 5", "1_0" and non-ASCII digits.
_INTEGER = re.compile(r"-?[0-9]{1,18}")  # a sign: "-1" is out of range, not "not an integer"


def int_query(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """`?name=N` as an integer in lo..hi (`default` when absent); else a 400 saying so."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise Problem(400, "Bad Request", f"query parameter {name!r} must be an integer")
    value = int(raw)
    if not lo <= value <= hi:
        raise Problem(400, "Bad Request", f"query parameter {name!r} must be in {lo}..{hi}")
    return value
