"""RFC 9457 problem details: every error leaves the API as `application/problem+json`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
import orjson
import redis.exceptions
from aiohttp import web

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"

# A backing store that does not answer is a 503 (retry later), not a 500.
BACKEND_DOWN = (
    ConnectionError, TimeoutError, redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError, nats.errors.TimeoutError, nats.errors.NoServersError,
    nats.errors.ConnectionClosedError,
)


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str = "", **extra: Any):
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra


def problem_response(status: int, title: str, detail: str = "", instance: str = "",
                     **extra: Any) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    return web.Response(status=status, body=orjson.dumps(body), content_type=PROBLEM)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as p:
        return problem_response(p.status, p.title, p.detail, request.path, **p.extra)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else ""
        return problem_response(exc.status, exc.reason, detail, request.path)
    except BACKEND_DOWN as exc:
        log.warning("backend unavailable: %s", exc)
        return problem_response(503, "Service Unavailable", "a backing store is unreachable; retry",
                                request.path)
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return problem_response(500, "Internal Server Error", "unexpected error; see server logs",
                                request.path)
