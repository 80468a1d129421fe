"""API service: clients in the lifespan, the app on `settings.http`."""

from __future__ import annotations

import asyncio
import logging
import uuid

import aiohttp

from helios.bus import close as close_nats
from helios.bus import connect, ensure_streams
from helios.definitions import Definitions
from helios.health import Health, heartbeat, serve_http
from helios.runtime import StopEvent, guard
from helios.s3 import open_s3
from helios.settings import Settings
from helios.store import open_redis
from helios.subjects import Streams
from services.api.app import make_app
from services.api.auth import check_auth
from services.api.context import ApiContext
from services.api.firing import loops as firing_loops
from services.api.parsing import PARSER, ParserPool
from services.api.problems import hide_server_version, server_header

log = logging.getLogger(__name__)

# Connection-level bounds (the request body's own are in dags.py). An idle connection, or
# one that never finishes sending its headers, is closed after `keepalive_timeout`; the
# unread rest of a body a handler did not want is drained for `lingering_time` at most.
HTTP_LIMITS = {"keepalive_timeout": 15.0, "lingering_time": 2.0}


async def serve(settings: Settings, stop: StopEvent, health: Health,
                bound: asyncio.Future[int] | None = None) -> None:
    """`bound` (tests, port 0) receives the port the server listens on."""
    check_auth(settings.auth)  # no tokens, no API: refused before connecting to anything
    nc = await connect(settings.nats, "helios-api")
    redis = open_redis(settings.redis)
    try:
        js = nc.jetstream(timeout=settings.nats.request_timeout_s)
        await ensure_streams(js, Streams(replicas=settings.nats.stream_replicas))
        async with open_s3(settings.s3) as s3, aiohttp.ClientSession() as http, \
                ParserPool() as parser:
            health.add_check("redis", redis.ping)
            health.add_check("nats", js.account_info)
            context = ApiContext(settings, nc, js, redis, s3, http, health, Definitions(redis))
            app = make_app(context, health)
            app[PARSER] = parser
            app.on_response_prepare.append(server_header)
            hide_server_version()
            # Bodies are decompressed by the handler, bounded: a zip bomb stops at 1 MiB.
            # Schedules, backfills and triggers fire while the api runs (and stop after it).
            async with firing_loops.running(context, parser, app, stop), \
                    serve_http(app, settings.http.host, settings.http.port,
                               auto_decompress=False, **HTTP_LIMITS) as port:
                if bound is not None and not bound.done():
                    bound.set_result(port)
                beat = guard(heartbeat(redis, health, uuid.uuid4().hex[:8], stop), "heartbeat")
                health.ready.set()
                log.info("api listening", extra={"port": port})
                await stop.wait()
                health.draining = True
                context.shutting_down.set()
                await beat
    finally:
        await close_nats(nc)
        await redis.aclose()
