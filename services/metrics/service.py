"""The metrics service's lifecycle: connect, consume, serve HTTP, drain on stop."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from nats.aio.client import Client as NATS

from helios import bus, subjects
from helios.health import Health, health_app, heartbeat, serve_http
from helios.liveness import ConsumerRef, watch_consumers
from helios.runtime import StopEvent, cancel_all, guard
from helios.settings import Settings
from helios.store import open_redis
from services.metrics import api, keys
from services.metrics.consumer import EventConsumer
from services.metrics.deletions import follow_deletions
from services.metrics.store import MetricsStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricsOptions:
    """Knobs of the consumer; the defaults are the production values, tests shrink them."""

    durable: str = "metrics"
    batch: int = 256
    concurrency: int = 32  # runs refreshed in parallel within one batch
    # An unacked event comes back after this (e.g. after a kill): short, so a restarted
    # service catches up within seconds; a long batch signals progress (bus.keep_alive).
    ack_wait_s: float = bus.REDELIVERY_S[0]
    fetch_timeout_s: float = 1.0  # an idle fetch returns after this, so stop is noticed
    window: int = keys.WINDOW_SIZE
    # Test seam: awaited before each run's refresh (tests pause a batch mid-way); None in production.
    before_refresh: Callable[[str], Awaitable[None]] | None = None


async def serve(
    settings: Settings,
    stop: StopEvent,
    health: Health,
    *,
    options: MetricsOptions | None = None,
    port: asyncio.Future[int] | None = None,
) -> None:
    """Run until `stop` is set, then drain within `settings.drain_timeout_s`.

    `port`, when given, receives the bound HTTP port once the server listens: with
    `HELIOS_HTTP_PORT=0` that is how a caller (the tests) learns where to connect.
    `health.ready` is set once the consumer is bound and HTTP answers.
    """
    options = options or MetricsOptions()
    streams = subjects.Streams(replicas=settings.nats.stream_replicas)
    redis = open_redis(settings.redis)
    nc: NATS | None = None
    pull: asyncio.Task[Any] | None = None
    beat: asyncio.Task[Any] | None = None
    prune: asyncio.Task[Any] | None = None
    watchdog: asyncio.Task[Any] | None = None
    try:
        nc = await bus.connect(settings.nats, "helios-metrics")
        js = nc.jetstream(timeout=settings.nats.request_timeout_s)
        await bus.ensure_streams(js, streams)
        sub = await bus.ensure_consumer(js, bus.Consumer(
            stream=streams.runs,
            durable=options.durable,
            # Every run's feed: `helios.run.{dagId}.>` for any dagId.
            filter_subject=subjects.run_feed("*"),
            ack_wait_s=options.ack_wait_s,
            batch=options.batch,
        ))
        store = MetricsStore(redis, window=options.window)
        _add_checks(health, nc, redis)

        app = health_app(health)
        app[api.STORE] = store
        app.add_routes(api.routes())
        async with serve_http(app, settings.http.host, settings.http.port) as bound:
            if port is not None and not port.done():
                port.set_result(bound)
            consumer = EventConsumer(store, options.concurrency,
                                     before_refresh=options.before_refresh)
            pull = guard(
                bus.pull_forever(sub, consumer.on_batch, batch=options.batch, stop=stop,
                                 idle_timeout_s=options.fetch_timeout_s),
                "metrics-pull", stop,
            )
            # Runs retention deleted leave the window (and the name's order).
            prune = guard(follow_deletions(redis, store, stop), "metrics-deletions", stop)
            # Readiness published for `GET /api/v1/system/status`.
            beat = guard(heartbeat(redis, health, uuid.uuid4().hex[:8], stop), "metrics-heartbeat")
            # Not live without our consumer: exit so that a restart creates it again.
            watchdog = guard(watch_consumers(
                js, [ConsumerRef(streams.runs, options.durable)], health, stop,
            ), "consumer-watchdog", stop)
            health.ready.set()
            log.info("metrics service ready on port %d", bound)
            await stop.wait()
            health.draining = True
            # pull_forever returns once its current fetch and batch are done: the drain.
            done, _ = await asyncio.wait({pull}, timeout=settings.drain_timeout_s)
            if not done:
                log.warning("in-flight batch did not finish within %.1fs; cancelling",
                            settings.drain_timeout_s)
            await asyncio.wait({beat, prune}, timeout=5.0)  # beat removes its entry on stop
    finally:
        await cancel_all([t for t in (pull, beat, prune, watchdog)
                          if t is not None and not t.done()])
        if nc is not None:
            # Flushes the acks of the last batch before closing.
            await bus.close(nc)
        await redis.aclose()


def _add_checks(health: Health, nc: NATS, redis: aioredis.Redis) -> None:
    async def redis_ping() -> None:
        await redis.ping()

    health.add_check("nats", bus.connected_check(nc))
    health.add_check("redis", redis_ping)
