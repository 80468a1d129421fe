"""Request bodies and path parts of the firing routes, validated into problems (400s)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from helios.dag.parse import DagError
from helios.definitions import new_run_id
from helios.instantiate import RunSpec
from helios.schedules.records import NAME_PATTERN
from services.api.context import ApiContext
from services.api.dags import read_body
from services.api.firing import templates_access
from services.api.firing.templates_access import Stored
from services.api.launch import busy, invalid
from services.api.parsing import ParserBusy, ParserPool
from services.api.problems import Problem

MAX_BODY = 256 * 1024
BODY_TIMEOUT_S = 10.0
_NAME = re.compile(NAME_PATTERN)
_ID = re.compile(r"^[0-9a-f]{32}$")
M = TypeVar("M", bound=BaseModel)


def name_of(request: web.Request, part: str = "name", what: str = "stored DAG") -> str:
    name = request.match_info[part]
    if len(name) > 63 or not _NAME.fullmatch(name):
        raise Problem(404, "Not Found", f"no {what} {name[:80]!r} (names are DNS-1123 labels)")
    return name


def id_of(request: web.Request, part: str = "id") -> str:
    value = request.match_info[part]
    if not _ID.fullmatch(value):
        raise Problem(404, "Not Found", f"no backfill {value[:80]!r}")
    return value


async def json_body(request: web.Request, *, empty_ok: bool = False) -> bytes | None:
    """The raw, well-formed JSON body (bounded in size and time); None for an absent body
    if `empty_ok`."""
    if request.content_type != "application/json" and (request.body_exists or not empty_ok):
        raise Problem(415, "Unsupported Media Type", "send the body as application/json")
    raw = bytes(await read_body(request, MAX_BODY, BODY_TIMEOUT_S))
    if len(raw) > MAX_BODY:
        raise Problem(413, "Payload Too Large", f"the body is larger than {MAX_BODY} bytes")
    if not raw.strip():
        if empty_ok:
            return None
        raise Problem(400, "Bad Request", "the body is empty: send a JSON object")
    try:
        orjson.loads(raw)  # well-formed first: a precise message
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "Bad Request", f"malformed JSON: {exc}"[:300]) from None
    return raw


async def no_body(request: web.Request) -> None:
    """Routes that take nothing: no body, or an empty JSON object."""
    raw = await json_body(request, empty_ok=True)
    if raw is not None and orjson.loads(raw) != {}:
        raise Problem(400, "Bad Request", "this request takes no body (or an empty JSON object)")


def validate(model: type[M], raw: bytes | None) -> M:
    """Strict, as JSON: "true" is no boolean and 5 no string (what the schema says)."""
    try:
        return model.model_validate_json(raw or b"", strict=True)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "(body)",
                   "reason": str(e["msg"])[:300]} for e in exc.errors(include_url=False)][:20]
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
        raise Problem(400, "Bad Request", f"invalid request body: {detail}"[:1000],
                      errors=errors) from None


async def template_of(c: ApiContext, name: str) -> Stored:
    stored = await templates_access.latest(c, name)
    if stored is None:
        raise Problem(404, "Not Found", f"no stored DAG {name!r}")
    return stored


async def check_run_params(parser: ParserPool, stored: Stored, params: dict[str, Any]) -> None:
    """The params fit the template's latest version: a dry run of its rendering (the
    same check a run's start makes), so a schedule does not fail at its first time."""
    spec = RunSpec(new_run_id(), datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                   dict(params))
    try:
        await parser.parse(stored.document, stored.media, None, spec.as_json())
    except DagError as exc:
        raise invalid(exc) from None
    except ParserBusy:
        raise busy() from None


def declared_names(stored: Stored) -> set[str]:
    return {str(p.get("name")) for p in stored.params if isinstance(p, dict)}
