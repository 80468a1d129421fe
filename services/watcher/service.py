"""Watcher service: a `TaskSource` (local runner or Kubernetes watch) whose reports go
to JetStream as `TaskReport`s on `helios.exec.{dagId}`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from prometheus_client import Counter

from helios import subjects
from helios.bus import close as close_nats
from helios.bus import connect, connected_check, ensure_streams, publish
from helios.executors.factory import open_task_source
from helios.health import Health, health_app, heartbeat, serve_http
from helios.logs import log_fields
from helios.messages import TaskReport
from helios.runtime import StopEvent, guard
from helios.s3 import open_s3
from helios.settings import Settings
from helios.store import open_redis
from helios.subjects import Streams

log = logging.getLogger(__name__)

REPORTS = Counter("helios_watcher_reports_total", "Task reports published", ["phase"])
CACHE_HITS = Counter("helios_cache_hits_total", "Inputs placed from the node cache")
CACHE_MISSES = Counter("helios_cache_misses_total", "Inputs fetched from S3 into the cache")
CACHE_BYTES_SAVED = Counter("helios_cache_bytes_saved_total", "Bytes not fetched thanks to hits")


async def serve(settings: Settings, stop: StopEvent, health: Health) -> None:
    nc = await connect(settings.nats, "helios-watcher")
    redis = open_redis(settings.redis)
    try:
        js = nc.jetstream(timeout=settings.nats.request_timeout_s)
        await ensure_streams(js, Streams(replicas=settings.nats.stream_replicas))
        health.add_check("nats", connected_check(nc))
        health.add_check("redis", redis.ping)

        async def sink(report: TaskReport) -> None:
            await publish(js, subjects.report(report.dag_id), report,
                          timeout=settings.nats.request_timeout_s)
            REPORTS.labels(report.phase).inc()
            if report.phase != "running":
                CACHE_HITS.inc(report.cache.hits)
                CACHE_MISSES.inc(report.cache.misses)
                CACHE_BYTES_SAVED.inc(report.cache.bytes_saved)
            log.debug("reported %s", report.phase, extra=log_fields(
                dagId=report.dag_id, task=report.task, attempt=report.attempt))

        async with open_s3(settings.s3) as s3, open_task_source(settings, nc, redis, s3) as source, \
                serve_http(health_app(health), settings.http.host, settings.http.port):
            source_ready = asyncio.Event()
            health.add_check("source", lambda: _is_set(source_ready))
            runner = guard(source.run(sink, stop, source_ready), "task-source", stop)
            # Ready means caught up with the backend (the first list, for Kubernetes).
            waiter = asyncio.ensure_future(source_ready.wait())
            await asyncio.wait({waiter, runner}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            beat = guard(heartbeat(redis, health, uuid.uuid4().hex[:8], stop), "heartbeat")
            health.ready.set()
            log.info("watcher ready", extra={"executor": settings.executor})
            await stop.wait()
            health.draining = True
            # The source drains its own in-flight work when `stop` is set.
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(runner), settings.drain_timeout_s + 5.0)
            runner.cancel()
            await beat
    finally:
        await close_nats(nc)
        await redis.aclose()


async def _is_set(event: asyncio.Event) -> None:
    if not event.is_set():
        raise RuntimeError("task source not caught up yet")
