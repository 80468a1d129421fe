"""Watcher side of the local backend: take attempts off the work queue and run them.

An attempt's dispatch message is acknowledged only once its final report is out, with
`in_progress()` heartbeats meanwhile, so a runner that dies mid-attempt leaves the
message for its successor. The successor finds the attempt claimed in Redis by a dead
runner and reports it lost instead of running it a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from prometheus_client import Gauge

from helios import keys, subjects, tasklogs
from helios.artifacts.cache import NodeCache
from helios.bus import HEARTBEAT_S, Consumer, ensure_streams, progress, push_subscribe
from helios.definitions import is_run_id
from helios.executors.base import ReportSink
from helios.executors.local.archiver import LogArchiver
from helios.executors.local.attempt import Attempt, AttemptContext, Outcome
from helios.executors.local.limits import HostLimits
from helios.executors.local.logsink import AttemptLog
from helios.logs import log_fields
from helios.messages import CancelRun, TaskDispatch, TaskReport
from helios.runs_view import read_run
from helios.runtime import guard
from helios.settings import Settings
from helios.states import RunState, TaskState
from helios.subjects import Streams

log = logging.getLogger(__name__)

SPOOL_DIR = ".logs"  # under the work dir: each attempt's whole log until it is archived

RUNNING = Gauge("helios_local_attempts_running", "Attempts running on this node")

CLAIM_TTL_S = 7 * 24 * 3600


class LocalRunner:
    def __init__(self, settings: Settings, nc: NATS, redis: aioredis.Redis, s3: Any):
        self.settings = settings
        self.nc = nc
        self.js = nc.jetstream()
        self.redis = redis
        self.instance = uuid.uuid4().hex
        self.ctx = AttemptContext(
            s3=s3, bucket=settings.s3.bucket,
            cache=NodeCache(settings.cache.dir, settings.cache.max_bytes),
            work_dir=settings.local.work_dir,
            node=settings.local.node_name, sandbox=settings.local.sandbox,
            keep_workspace=settings.local.keep_workspaces, network=settings.local.network,
            limits=HostLimits.from_settings(settings.local),
            secrets_dir=settings.local.secrets_dir,
        )
        self.running: dict[str, dict[str, Attempt]] = {}
        self.archiver = LogArchiver(s3, settings.s3.bucket)
        self.tasks: set[asyncio.Task[None]] = set()
        self.consumer = Consumer(
            stream=Streams(replicas=settings.nats.stream_replicas).dispatch,
            durable="local-runner", filter_subject=f"{subjects.PREFIX}.dispatch.>",
            # The default short ack wait: a dispatch held by a killed runner comes back
            # within seconds (then reported lost); a running attempt beats every second.
            max_deliver=-1, max_ack_pending=settings.local.max_parallel,
        )

    async def run(self, sink: ReportSink, stop: asyncio.Event, ready: asyncio.Event) -> None:
        await ensure_streams(self.js, Streams(replicas=self.settings.nats.stream_replicas))
        _sweep_spools(self.settings.local.work_dir / SPOOL_DIR)

        async def on_dispatch(msg: Msg) -> None:
            # max_ack_pending == max_parallel: the server never sends more than we can run.
            task = guard(self._handle(msg, sink), f"attempt:{msg.subject}")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        sub = await push_subscribe(self.js, self.consumer, on_dispatch)
        cancels = await self.nc.subscribe(subjects.CANCEL_RUN_ALL, cb=self._on_cancel)
        archive_stop = asyncio.Event()
        archiving = guard(self.archiver.run(archive_stop), "log-archiver")
        ready.set()
        try:
            await stop.wait()
        finally:
            for subscription in (sub, cancels):
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
            await self._drain()
            archive_stop.set()  # after the drain: the last attempts' logs go out too
            with contextlib.suppress(Exception):
                await asyncio.wait_for(archiving, 10.0)

    async def _drain(self) -> None:
        """On shutdown, in-flight attempts get the drain budget, then are killed."""
        if not self.tasks:
            return
        _, pending = await asyncio.wait(self.tasks, timeout=self.settings.drain_timeout_s)
        for attempts in self.running.values():
            for attempt in attempts.values():
                attempt.cancel()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _on_cancel(self, msg: Msg) -> None:
        with contextlib.suppress(Exception):
            dag_id = CancelRun.model_validate_json(msg.data).dag_id
            for attempt in self.running.get(dag_id, {}).values():
                attempt.cancel()

    async def _handle(self, msg: Msg, sink: ReportSink) -> None:
        try:
            dispatch = TaskDispatch.model_validate_json(msg.data)
        except ValueError as exc:
            log.error("poison dispatch dropped: %s", exc, extra=log_fields(subject=msg.subject))
            await msg.term()
            return
        extra = log_fields(dagId=dispatch.dag_id, task=dispatch.task.name, attempt=dispatch.attempt)
        if not is_run_id(dispatch.dag_id):
            # The run id becomes part of a host path: only the API's own ids are accepted.
            log.error("dispatch with a malformed run id dropped", extra=extra)
            await msg.term()
            return
        claimed, owner, wanted = await self._claim(dispatch)
        if not claimed:
            running = self.running.get(dispatch.dag_id, {}).get(dispatch.task.name)
            if owner == self.instance and running is not None and running.d.attempt == dispatch.attempt:
                return  # a redelivery of an attempt still running here: its handler acks
            # Claimed, but nobody runs it: its runner died (its processes died with it) or
            # this runner failed before reporting. Either way the attempt is lost: say so.
            log.warning("attempt claimed but not running; reporting it lost", extra=extra)
            logs = AttemptLog(self.redis, dispatch.dag_id, dispatch.task.name)
            await sink(Attempt(self.ctx, dispatch, logs).report("failed", Outcome(
                ok=False, reason="ExecutorLost",
                message="the runner of this attempt stopped before it finished")))
            await msg.ack()
            # What the lost attempt printed until its runner died is still in its spool.
            spool = self._attempt_log(dispatch).spool
            if spool is not None and spool.exists():
                self.archiver.submit(dispatch.dag_id, dispatch.task.name, dispatch.attempt, spool)
            return
        if not wanted:
            log.info("attempt no longer wanted; skipping", extra=extra)
            await msg.ack()
            return
        await self._run_attempt(msg, dispatch, sink, extra)

    async def _claim(self, d: TaskDispatch) -> tuple[bool, str | None, bool]:
        """Claim the attempt (SET NX) and see who holds it, while reading through the
        scheduler's typed reader whether it is still wanted (neither the run nor the task
        was cancelled meanwhile); both round trips run at once."""
        claim_key = keys.attempt_claim(d.dag_id, d.task.name, d.attempt)

        async def claim() -> tuple[Any, Any]:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(claim_key, self.instance, nx=True, ex=CLAIM_TTL_S)
                pipe.get(claim_key)
                claimed, owner = await pipe.execute()
            return claimed, owner

        (claimed, owner), run = await asyncio.gather(
            claim(), read_run(self.redis, d.dag_id, [d.task.name], detail=False))
        # Only the attempt the scheduler waits for: a stale dispatch of an older attempt
        # (cancelled, then retried) must not run beside the new one. A run that no longer
        # exists (deleted by retention) is not wanted either.
        task = run.tasks[d.task.name] if run is not None else None
        wanted = (run is not None and task is not None and run.state != RunState.CANCELLED
                  and task.state in (TaskState.QUEUED, TaskState.RUNNING)
                  and task.attempts == d.attempt)
        return bool(claimed), owner, wanted

    def _attempt_log(self, d: TaskDispatch) -> AttemptLog:
        # The spool lives beside the workspaces, not in one: a workspace goes when its
        # attempt ends, the spool only once the archiver has stored it.
        return AttemptLog(self.redis, d.dag_id, d.task.name, attempt=d.attempt,
                          max_bytes=self.settings.log_max_bytes, bucket=self.settings.s3.bucket,
                          spool=self.settings.local.work_dir / SPOOL_DIR / f"{d.job_name}.log")

    async def _run_attempt(self, msg: Msg, d: TaskDispatch, sink: ReportSink, extra: dict[str, Any]) -> None:
        logs = self._attempt_log(d)
        attempt = Attempt(self.ctx, d, logs)
        self.running.setdefault(d.dag_id, {})[d.task.name] = attempt
        RUNNING.inc()
        heartbeat = asyncio.create_task(_heartbeat(msg), name=f"heartbeat:{d.job_name}")
        logs.start()
        if d.attempt > 1:
            logs.emit(tasklogs.ATTEMPT_BANNER.format(attempt=d.attempt))
        try:
            async def started() -> None:
                try:
                    await sink(attempt.report("running"))
                except Exception as exc:  # the final report still comes; don't lose the process
                    log.warning("could not report the attempt running: %s", exc, extra=extra)

            outcome = await attempt.run(started)
            try:
                await logs.close()  # every line is in Redis before the report goes out
            except Exception as exc:
                log.warning("could not store the last log lines: %s", exc, extra=extra)
            if attempt.timings.finished_at is None:
                attempt.timings.finished_at = time.time()
            await _deliver(sink, attempt.report("succeeded" if outcome.ok else "failed", outcome),
                           extra)
            await msg.ack()
            if logs.spool is not None:
                self.archiver.submit(d.dag_id, d.task.name, d.attempt, logs.spool)
            log.info("attempt %s", "succeeded" if outcome.ok else f"failed: {outcome.reason}",
                     extra=extra)
        except BaseException:
            attempt.cancel()  # never leave a process behind that nobody reads or reports
            raise
        finally:
            RUNNING.dec()
            heartbeat.cancel()
            with contextlib.suppress(Exception):
                await logs.close()
            attempts = self.running.get(d.dag_id, {})
            attempts.pop(d.task.name, None)
            if not attempts:
                self.running.pop(d.dag_id, None)


SPOOL_MAX_AGE_S = 24 * 3600


def _sweep_spools(folder: Path) -> None:
    """Spools left by a killed runner are archived when their attempt is reported lost;
    one nobody came back for (its run cancelled meanwhile) must not stay forever."""
    cutoff = time.time() - SPOOL_MAX_AGE_S
    for spool in folder.glob("*.log") if folder.is_dir() else ():
        with contextlib.suppress(OSError):
            if spool.stat().st_mtime < cutoff:
                spool.unlink()


REPORT_RETRY_S = (0.1, 0.5, 1.0, 2.0, 5.0)


async def _deliver(sink: ReportSink, report: TaskReport, extra: dict[str, Any]) -> None:
    """The final report must get out: retry through a bus hiccup (the scheduler has no
    other way to learn the outcome), then give up loudly; the unacked dispatch then
    comes back and is reported lost."""
    for delay in (*REPORT_RETRY_S, None):
        try:
            await sink(report)
            return
        except Exception as exc:
            if delay is None:
                raise
            log.warning("report not delivered (%s); retrying in %.1fs", exc, delay, extra=extra)
            await asyncio.sleep(delay)


async def _heartbeat(msg: Msg) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        await progress([msg])
