"""Scheduler service: durable consumers of commands and reports feeding the engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from nats.aio.msg import Msg

from helios import subjects
from helios.bus import (
    HEARTBEAT_S,
    Consumer,
    connect,
    connected_check,
    ensure_streams,
    progress,
    push_subscribe,
)
from helios.bus import close as close_nats
from helios.executors.factory import open_executor
from helios.health import Health, health_app, heartbeat, serve_http
from helios.liveness import ConsumerRef, watch_consumers
from helios.runtime import StopEvent, cancel_all, guard
from helios.s3 import open_s3
from helios.settings import Settings
from helios.store import open_redis
from helios.subjects import Streams
from services.scheduler.decide import Policy
from services.scheduler.dynamic import s3_reader
from services.scheduler.engine import Engine
from services.scheduler.index import backfill_until_done
from services.scheduler.queues import RunQueues
from services.scheduler.retention import Retention
from services.scheduler.store import RunStore

log = logging.getLogger(__name__)


def run_id_of(subject: str) -> str:
    """`helios.cmd.<kind>.<dagId>` and `helios.exec.<dagId>` both end with the run id."""
    return subject.rsplit(".", 1)[-1]


async def serve(settings: Settings, stop: StopEvent, health: Health) -> None:
    streams = Streams(replicas=settings.nats.stream_replicas)
    nc = await connect(settings.nats, "helios-scheduler")
    redis = open_redis(settings.redis)
    try:
        js = nc.jetstream(timeout=settings.nats.request_timeout_s)
        await ensure_streams(js, streams)
        health.add_check("nats", connected_check(nc))
        health.add_check("redis", redis.ping)
        policy = Policy(
            retry_backoff_s=settings.scheduler.retry_backoff_s,
            retry_backoff_max_s=settings.scheduler.retry_backoff_max_s,
            lost_attempts_max=settings.scheduler.lost_attempts_max,
            max_running_per_run=settings.k8s.max_parallel_jobs_per_run
            if settings.executor == "kubernetes" else 1_000_000,
        )
        async with open_executor(settings, nc, redis) as executor, serve_http(
            health_app(health), settings.http.host, settings.http.port
        ), open_s3(settings.s3) as s3:
            engine = Engine(js, RunStore(redis), executor, policy, settings.nats.request_timeout_s,
                            read_object=s3_reader(s3, settings.s3.bucket))
            queues: RunQueues[Msg] = RunQueues(engine.handle, settings.scheduler.max_runs_in_flight)

            async def route(msg: Msg) -> None:
                queues.put(run_id_of(msg.subject), msg)

            consumers = (
                # Never give up on a submission or a report (an outage must not drop
                # a run); the engine backs off instead. The ack wait is short (what a
                # killed scheduler held comes back within seconds); `keep_alive`
                # below keeps a backlog behind busy runs from being redelivered.
                Consumer(streams.commands, "scheduler-commands", f"{subjects.PREFIX}.cmd.>",
                         max_deliver=-1),
                Consumer(streams.reports, "scheduler-reports", f"{subjects.PREFIX}.exec.>",
                         max_deliver=-1),
            )
            subs = [await push_subscribe(js, consumer, route) for consumer in consumers]
            beat = guard(heartbeat(redis, health, uuid.uuid4().hex[:8], stop), "heartbeat")
            settled = asyncio.Event()  # held messages stay alive through the drain too
            # Twice per heartbeat: a held message is touched at most 1 s after it arrived.
            alive = guard(queues.keep_alive(progress, HEARTBEAT_S / 2, settled), "in-progress")
            # The one retention loop of the system (see helios.keys: one owner per record).
            retention = guard(Retention(redis, s3, settings.s3.bucket, settings.retention,
                                        engine.store.forget).run(stop), "retention", stop)
            # Runs stored before the runs list index existed: indexed once, in the background.
            backfilling = guard(backfill_until_done(redis), "runs-index-backfill")
            # Not live without our consumers: exit so that a restart creates them again.
            watchdog = guard(watch_consumers(
                js, [ConsumerRef(c.stream, c.durable) for c in consumers], health, stop,
            ), "consumer-watchdog", stop)
            health.ready.set()
            log.info("scheduler ready", extra={"executor": settings.executor})
            await stop.wait()
            health.draining = True
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            await beat
            await cancel_all([retention, watchdog, backfilling], timeout=settings.drain_timeout_s)
            for msg in await queues.drain(settings.drain_timeout_s):
                with contextlib.suppress(Exception):
                    await msg.nak()
            settled.set()
            await alive
    finally:
        await close_nats(nc)
        await redis.aclose()
