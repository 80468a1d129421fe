"""`GET /api/v1/dags/{dagName}/metrics?limit=N`: the newest runs of a DAG and a summary."""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from helios.dag.model import DNS1123_LABEL
from helios.logs import log_fields
from services.metrics.store import MetricsStore
from services.metrics.summary import summarize

log = logging.getLogger(__name__)

ROUTE = "/api/v1/dags/{dagName}/metrics"
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
STORE = web.AppKey("metrics_store", MetricsStore)

_NAME = re.compile(DNS1123_LABEL)
_DIGITS = re.compile(r"[0-9]{1,4}")
_PROBLEM = "application/problem+json"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def problem(request: web.Request, status: int, title: str, detail: str) -> web.Response:
    """RFC 9457 problem details, as every Helios API error."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "instance": request.path}
    return web.Response(text=_dumps(body), status=status, content_type=_PROBLEM)


def parse_limit(values: list[str]) -> int | str:
    """The limit, or why it is invalid."""
    if not values:
        return DEFAULT_LIMIT
    if len(values) > 1:
        return "limit: give it once"
    raw = values[0]
    # ASCII digits only: str.isdigit() also accepts "²", which int() rejects.
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        return f"limit: must be an integer from 1 to {MAX_LIMIT}, got {raw[:20]!r}"
    return int(raw)


async def get_metrics(request: web.Request) -> web.Response:
    name = request.match_info["dagName"]
    if len(name) > 63 or not _NAME.fullmatch(name):
        return problem(request, 400, "Bad Request",
                       f"dagName: {name[:80]!r} is not a DNS-1123 label "
                       "(lowercase letters, digits and '-', at most 63 characters)")
    limit = parse_limit(request.query.getall("limit", []))
    if isinstance(limit, str):
        return problem(request, 400, "Bad Request", limit)
    try:
        runs, timings = await request.app[STORE].window_runs(name, limit)
    except RedisError as exc:
        log.warning("metrics store unavailable: %s", exc, extra=log_fields(dagName=name))
        return problem(request, 503, "Service Unavailable", "the metrics store is unavailable")
    body = {
        "dagName": name,
        "limit": limit,
        "runs": [r.model_dump(by_alias=True) for r in runs],
        "summary": summarize(runs, timings).model_dump(by_alias=True),
    }
    return web.json_response(body, dumps=_dumps)


def routes() -> list[web.RouteDef]:
    return [web.get(ROUTE, get_metrics)]
