"""`/healthz`, `/readyz` and Prometheus `/metrics`, shared by every service."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from helios import keys

Check = Callable[[], Awaitable[object]]


class Health:
    """Liveness is "the loop answers"; readiness is every registered check passing."""

    def __init__(self, service: str, check_timeout_s: float = 2.0):
        self.service = service
        self.check_timeout_s = check_timeout_s
        self.checks: dict[str, Check] = {}
        self.ready = asyncio.Event()  # set once the service finished starting
        self.draining = False
        # Why the service is no longer live (e.g. its consumer is gone); `/healthz` then
        # answers 503 so an orchestrator restarts it.
        self.dead: str | None = None

    def add_check(self, name: str, check: Check) -> None:
        self.checks[name] = check

    async def report(self) -> tuple[bool, dict[str, str]]:
        results: dict[str, str] = {}
        names = list(self.checks)
        outcomes = await asyncio.gather(
            *(asyncio.wait_for(self.checks[n](), self.check_timeout_s) for n in names),
            return_exceptions=True,
        )
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                results[name] = f"error: {type(outcome).__name__}: {outcome}"[:200]
            else:
                results[name] = "ok"
        ok = self.ready.is_set() and not self.draining and all(v == "ok" for v in results.values())
        if not self.ready.is_set():
            results["startup"] = "starting"
        if self.draining:
            results["shutdown"] = "draining"
        return ok, results

    async def healthz(self, _: web.Request) -> web.Response:
        if self.dead is not None:
            return web.json_response(
                {"status": "dead", "service": self.service, "reason": self.dead}, status=503)
        return web.json_response({"status": "ok", "service": self.service})

    async def readyz(self, _: web.Request) -> web.Response:
        ok, results = await self.report()
        return web.json_response(
            {"status": "ok" if ok else "unavailable", "service": self.service, "checks": results},
            status=200 if ok else 503,
        )

    @staticmethod
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.metrics),
        ]


@contextlib.asynccontextmanager
async def serve_http(app: web.Application, host: str, port: int,
                     **handler_args: Any) -> AsyncIterator[int]:
    """Run `app` until the block exits; yields the bound port (useful with port 0)."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0,
                           **handler_args)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    # AbstractServer does not declare `sockets`; asyncio's Server (what we get) has it.
    sockets = getattr(site._server, "sockets", None)
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    try:
        yield bound
    finally:
        await runner.cleanup()


def health_app(health: Health) -> web.Application:
    app = web.Application()
    app.add_routes(health.routes())
    return app


HEARTBEAT_S = 5.0
FORGET_AFTER_S = 3600.0


async def heartbeat(redis: Any, health: Health, instance: str, stop: asyncio.Event) -> None:
    """Publish this instance's readiness to Redis for `GET /api/v1/system/status`."""
    field = f"{health.service}/{instance}"
    while not stop.is_set():
        ok, checks = await health.report()
        payload = orjson.dumps({"service": health.service, "instance": instance, "ready": ok,
                                "checks": checks, "at": time.time()})
        with contextlib.suppress(Exception):
            await redis.hset(keys.services(), field, payload)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), HEARTBEAT_S)
    with contextlib.suppress(Exception):
        await redis.hdel(keys.services(), field)


async def read_heartbeats(redis: Any, max_age_s: float = 3 * HEARTBEAT_S) -> list[dict[str, Any]]:
    now = time.time()
    out = []
    gone = []
    for field, raw in (await redis.hgetall(keys.services())).items():
        beat = orjson.loads(raw)
        if now - beat["at"] > FORGET_AFTER_S:
            gone.append(field)  # an instance that crashed without saying goodbye
            continue
        beat["stale"] = now - beat["at"] > max_age_s
        out.append(beat)
    if gone:
        await redis.hdel(keys.services(), *gone)
    return sorted(out, key=lambda b: (b["service"], b["instance"]))
