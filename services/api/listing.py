"""`GET /api/v1/dags` (the runs list) and `GET /api/v1/dag-names`, read from the
scheduler's runs index through `helios.runs_index`; and their OpenAPI entries.

The query is checked against exactly what the OpenAPI document declares, so a request
valid by the schema is never refused and an invalid one always gets a 400 problem.
An empty `name=` or `state=` means "no filter" (a form's "all" choice)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from helios import runs_index
from helios.dag.model import DNS1123_LABEL
from helios.runs_index import CURSOR_PATTERN, CursorError, Position
from helios.states import RunState
from services.api.context import ctx
from services.api.problems import Problem

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_NAME = 63
_STATE = "(" + "|".join(s.value for s in RunState) + ")"
STATE_PATTERN = rf"^({_STATE}(,{_STATE})*)?$"
NAME_PATTERN = r"^$|" + DNS1123_LABEL
_INTEGER = re.compile(r"-?[0-9]{1,18}")


@dataclass(frozen=True)
class ListQuery:
    name: str | None = None
    states: frozenset[RunState] = frozenset()
    limit: int = DEFAULT_LIMIT
    cursor: Position | None = None


def _bad(detail: str) -> Problem:
    return Problem(400, "Bad Request", detail)


def _one(query: MultiMapping[str], key: str) -> str | None:
    values = query.getall(key, [])
    if len(values) > 1:
        raise _bad(f"query parameter {key!r} may be given once")
    return values[0] if values else None


def parse_query(query: MultiMapping[str]) -> ListQuery:
    """The listing's parameters, or a 400 naming the first bad one."""
    name = _one(query, "name") or None
    if name is not None and (len(name) > MAX_NAME or not re.fullmatch(DNS1123_LABEL, name)):
        raise _bad("query parameter 'name' must be a DAG name (a DNS-1123 label, at most 63 "
                   "characters)")
    states: set[RunState] = set()
    for raw in query.getall("state", []):
        if not re.fullmatch(STATE_PATTERN, raw):
            raise _bad("query parameter 'state' must be one or more of "
                       f"{', '.join(s.value for s in RunState)} (repeated or comma-separated)")
        states |= {RunState(s) for s in raw.split(",") if s}
    limit = DEFAULT_LIMIT
    raw_limit = _one(query, "limit")
    if raw_limit is not None:
        if not _INTEGER.fullmatch(raw_limit):
            raise _bad("query parameter 'limit' must be an integer")
        limit = int(raw_limit)
        if not 1 <= limit <= MAX_LIMIT:
            raise _bad(f"query parameter 'limit' must be in 1..{MAX_LIMIT}")
    raw_cursor = _one(query, "cursor") or None
    try:
        cursor = runs_index.decode_cursor(raw_cursor) if raw_cursor else None
    except CursorError as exc:
        raise _bad(f"query parameter 'cursor': {exc}") from None
    return ListQuery(name, frozenset(states), limit, cursor)


async def list_runs(request: web.Request) -> web.Response:
    q = parse_query(request.query)
    result = await runs_index.list_runs(ctx(request).redis, name=q.name, states=q.states,
                                        limit=q.limit, cursor=q.cursor)
    return web.json_response({
        "runs": [r.model_dump(mode="json", by_alias=True) for r in result.runs],
        "next": result.next,
    })


async def dag_names(request: web.Request) -> web.Response:
    return web.json_response({"names": await runs_index.dag_names(ctx(request).redis)})


# --- OpenAPI ------------------------------------------------------------------------

_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
_UNAVAILABLE = {"description": "The state store is unavailable; retry", "content": _PROBLEM}

SCHEMAS: dict[str, Any] = {
    "RunSummary": {
        "type": "object",
        "required": ["dagId", "dagName", "state", "submittedAt", "startedAt", "endedAt",
                     "durationMs", "taskCount", "useCache"],
        "properties": {
            "dagId": {"type": "string"}, "dagName": {"type": ["string", "null"]},
            "state": {"type": "string", "enum": [s.value for s in RunState]},
            "submittedAt": {"type": ["number", "null"], "description": "Unix time, seconds"},
            "startedAt": {"type": ["number", "null"]}, "endedAt": {"type": ["number", "null"]},
            "durationMs": {"type": ["integer", "null"], "description": "null until it ends"},
            "taskCount": {"type": ["integer", "null"]}, "useCache": {"type": "boolean"},
        },
    },
    "RunList": {
        "type": "object", "required": ["runs", "next"],
        "properties": {
            "runs": {"type": "array", "items": {"$ref": "#/components/schemas/RunSummary"}},
            "next": {"type": ["string", "null"], "description":
                     "Pass as `cursor` for the next page; null on the last page"},
        },
    },
    "DagNames": {
        "type": "object", "required": ["names"],
        "properties": {"names": {"type": "array", "items": {"type": "string"}}},
    },
}

LIST_RUNS: dict[str, Any] = {
    "summary": "Runs of every DAG name, newest first by submit time (paginated)",
    "operationId": "listRuns",
    "parameters": [
        {"name": "name", "in": "query", "required": False, "description":
         "Only runs of this DAG name (exact); empty: every name",
         "schema": {"type": "string", "maxLength": MAX_NAME, "pattern": NAME_PATTERN}},
        {"name": "state", "in": "query", "required": False, "style": "form", "explode": True,
         "description": "Only runs in these states: repeat the parameter or separate with "
                        "commas; empty: every state",
         "schema": {"type": "array", "items": {"type": "string", "pattern": STATE_PATTERN}}},
        {"name": "limit", "in": "query", "required": False, "schema": {
            "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
        {"name": "cursor", "in": "query", "required": False, "description":
         "Opaque: the `next` of the previous page. Runs submitted since do not shift pages.",
         "schema": {"type": "string", "pattern": r"^$|" + CURSOR_PATTERN}},
    ],
    "responses": {
        "200": {"description": "One page of runs",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RunList"}}}},
        "400": {"description": "Bad name, state, limit or cursor", "content": _PROBLEM},
        "503": _UNAVAILABLE,
    },
}

DAG_NAMES: dict[str, Any] = {
    "summary": "DAG names that have runs, most recently submitted first (at most 1000)",
    "operationId": "listDagNames",
    "responses": {
        "200": {"description": "Names",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DagNames"}}}},
        "503": _UNAVAILABLE,
    },
}
