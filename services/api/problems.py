"""RFC 9457 problem details: every error leaves the API as `application/problem+json`.

An error body names what failed in words a client can act on ("the message bus is
unavailable"), never an exception's text: those carry internal addresses and paths.
The details go to the server log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import nats.errors
import orjson
import redis.exceptions
from aiohttp import web, web_response
from prometheus_client import Counter

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"

# A backing store that does not answer is a 503 (retry later), not a 500.
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
NATS_DOWN = (nats.errors.TimeoutError, nats.errors.NoServersError,
             nats.errors.ConnectionClosedError)
BACKEND_DOWN = (ConnectionError, TimeoutError, *REDIS_DOWN, *NATS_DOWN)

# Headers an HTTP error must keep when it is turned into a problem: `Allow` on a 405,
# `WWW-Authenticate` on a 401, `Retry-After` on a 503.
KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str = "", *,
                 headers: Mapping[str, str] | None = None, **extra: Any):
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra


def problem_response(status: int, title: str, detail: str = "", instance: str = "", *,
                     headers: Mapping[str, str] | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    kept = {k: v for k, v in (headers or {}).items() if k.lower() != "connection"}
    response = web.Response(status=status, body=orjson.dumps(body), content_type=PROBLEM,
                            headers=kept)
    if (headers or {}).get("Connection", "").lower() == "close":
        response.force_close()  # e.g. a 408: the rest of a stalled body is never read
    return response


def unavailable(exc: BaseException) -> str:
    """Which dependency failed, in words: never the exception's text (it names addresses)."""
    if isinstance(exc, REDIS_DOWN):
        return "the state store (Redis) is unavailable; retry"
    if isinstance(exc, NATS_DOWN):
        return "the message bus (NATS) is unavailable; retry"
    return "a backing service is unavailable; retry"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SERVER = "helios"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
RESPONSES = Counter("helios_api_responses_total", "API responses, by method and status",
                    ["method", "status"])


def hide_server_version() -> None:
    """aiohttp answers a request it cannot even parse (a 400, before any app code runs)
    with `Server: Python/3.x aiohttp/3.y`; `on_response_prepare` never sees those. The
    default is a module constant read when headers are sent: set it for the process.
    tests/e2e/test_api_hardening.py checks a malformed request, should aiohttp change."""
    web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]


async def server_header(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the Server header names no software versions; every
    response is counted (a client's made-up method is "OTHER": labels stay bounded)."""
    response.headers["Server"] = SERVER
    method = request.method if request.method in METHODS else "OTHER"
    RESPONSES.labels(method, str(response.status)).inc()


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as p:
        return problem_response(p.status, p.title, p.detail, request.path, headers=p.headers,
                                **p.extra)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else ""
        kept = {h: exc.headers[h] for h in KEPT_HEADERS if h in exc.headers}
        return problem_response(exc.status, exc.reason, detail, request.path, headers=kept)
    except BACKEND_DOWN as exc:
        log.warning("backend unavailable: %r", exc, extra={"path": request.path})
        return problem_response(503, "Service Unavailable", unavailable(exc), request.path)
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return problem_response(500, "Internal Server Error", "unexpected error; see server logs",
                                request.path)
