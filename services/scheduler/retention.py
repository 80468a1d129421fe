"""Retention: the one loop that deletes runs (owned by the scheduler, see `helios.keys`).

A run that ENDED more than `HELIOS_RETENTION_DAYS` ago is deleted with every Redis key
it has (`keys.run_keys`), its logs and its objects (`dags/{dagId}/...`), in bounded
batches. Candidates come from the scheduler's `runs:ended` index (oldest first), never
from a keyspace scan. A run in flight is never deleted: the run hash is WATCHed while
the decision is made, so a retry that makes the run RUNNING again aborts the deletion.

Per run: one MULTI deletes its keys, drops it from `runs:ended`, appends it to
`runs:deleted` (the metrics service prunes its window from that stream) and queues its
objects in `retention:objects`. Objects go second: a crash in between leaves queued work,
never a half-deleted run that still looks alive. An object that a live memo entry
(`memo:{fp}`, found through `memo:refs:{dagId}`) points to is kept, and the run is
queued again for when that entry expires.

The decisions (which runs, which objects) are the pure functions at the top.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from helios import keys, objects, runs_index
from helios.definitions import Definitions
from helios.instances import run_entries
from helios.logs import log_fields
from helios.runs_view import RunRecord, read_run
from helios.settings import RetentionSettings

log = logging.getLogger(__name__)

DAY_S = 24 * 3600.0
DELETED_STREAM_MAXLEN = 100_000  # entries of `runs:deleted` kept (approximately)
S3_DELETE_BATCH = 1000  # the most one DeleteObjects request takes
MEMO_GRACE_S = 3600.0  # a run that got a memo hit just before expiry still reads its inputs
MAX_BATCHES_PER_PASS = 100  # a backlog is worked off over several passes, memory bounded


# --- decisions (pure) ---------------------------------------------------------------


def cutoff(now: float, days: float) -> float:
    """Runs that ended at or before this are past retention."""
    return now - days * DAY_S


def expired(run: RunRecord | None, now: float, days: float) -> bool:
    """True for a run to delete: ended, and ended before the cutoff. A run in flight
    (RUNNING, or not ended) never is. A run whose record is gone is (its leftovers)."""
    if run is None:
        return True
    return run.state.terminal and run.ended_at is not None and run.ended_at <= cutoff(now, days)


def memo_kept(dag_id: str, entries: Sequence[tuple[str | None, int]], now: float
              ) -> tuple[set[str], float | None]:
    """The object keys of run `dag_id` that live memo entries point to, and when the last
    of those entries expires (None when nothing is kept). `entries` are the raw
    `memo:{fp}` values with their PTTL in ms (-2: gone, -1: no expiry)."""
    keep: set[str] = set()
    until: float | None = None
    for raw, pttl_ms in entries:
        if raw is None or pttl_ms == -2:
            continue
        record = orjson.loads(raw)
        if record.get("dagId") != dag_id:
            continue  # a newer successful attempt took the fingerprint over
        keys_of = {o["key"] for o in record.get("outputs", []) if "key" in o}
        if not keys_of:
            continue
        keep |= keys_of
        ends = now + (pttl_ms / 1000 if pttl_ms >= 0 else 365 * DAY_S)
        until = ends if until is None else max(until, ends)
    return keep, until


def objects_to_delete(listed: Iterable[str], keep: set[str]) -> list[str]:
    return sorted(k for k in listed if k not in keep)


def batches(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


# --- the loop (I/O) -----------------------------------------------------------------


@dataclass
class PassReport:
    runs_deleted: list[str] = field(default_factory=list)
    runs_kept: list[str] = field(default_factory=list)  # in the index but not expired
    objects_deleted: int = 0
    objects_kept: int = 0


class Retention:
    def __init__(self, redis: aioredis.Redis, s3: Any, bucket: str, settings: RetentionSettings,
                 forget: Callable[[str], None] = lambda _: None):
        """`forget`: drop a deleted run from the scheduler's in-memory state."""
        self.redis = redis
        self.s3 = s3
        self.bucket = bucket
        self.settings = settings
        self.forget = forget
        self._definitions = Definitions(redis, size=8)

    async def run(self, stop: asyncio.Event) -> None:
        """A pass every `interval_s` until `stop`; an outage is logged and waited out."""
        while not stop.is_set():
            try:
                report = await self.pass_once(time.time())
                if report.runs_deleted or report.objects_deleted:
                    log.info("retention: %d runs and %d objects deleted, %d objects kept",
                             len(report.runs_deleted), report.objects_deleted,
                             report.objects_kept)
            except Exception:
                log.exception("retention pass failed; next pass in %.0fs",
                              self.settings.interval_s)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.interval_s)

    async def pass_once(self, now: float) -> PassReport:
        """Delete expired runs, then queued objects that are due, batch by batch (at most
        `MAX_BATCHES_PER_PASS` of each: the next pass carries on)."""
        report = PassReport()
        limit = cutoff(now, self.settings.days)
        for _ in range(MAX_BATCHES_PER_PASS):
            # Runs kept in this pass (changed under us) stay in the index: skip past them.
            ids = [str(v) for v in await self.redis.zrangebyscore(
                keys.RUNS_ENDED, "-inf", limit, start=len(report.runs_kept),
                num=self.settings.batch)]
            for dag_id in ids:
                try:
                    gone = await self.delete_run(dag_id, now)
                except Exception:
                    # One unreadable run must not stall retention for every other one.
                    log.exception("retention could not delete a run; skipped this pass",
                                  extra=log_fields(dagId=dag_id))
                    gone = False
                (report.runs_deleted if gone else report.runs_kept).append(dag_id)
            if len(ids) < self.settings.batch:
                break
        for _ in range(MAX_BATCHES_PER_PASS):
            due = [str(v) for v in await self.redis.zrangebyscore(
                keys.RETENTION_OBJECTS, "-inf", now, start=0, num=self.settings.batch)]
            for dag_id in due:
                try:
                    removed, kept = await self.purge_objects(dag_id, now)
                except Exception:
                    log.exception("retention could not delete objects; retrying later",
                                  extra=log_fields(dagId=dag_id))
                    await self.redis.zadd(keys.RETENTION_OBJECTS,
                                          {dag_id: now + self.settings.interval_s})
                    continue
                report.objects_deleted += removed
                report.objects_kept += kept
            if len(due) < self.settings.batch:
                break
        return report

    async def delete_run(self, dag_id: str, now: float) -> bool:
        """Delete the run's keys if it is expired; False when it is not (or changed)."""
        extra = log_fields(dagId=dag_id)
        dag = await self._definitions.get(dag_id)
        names = await run_entries(self.redis, dag_id, dag) if dag is not None else []
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                # Watched before reading: a retry that restarts the run aborts the EXEC.
                await pipe.watch(keys.run(dag_id))
                run = await read_run(self.redis, dag_id, names, detail=False)
                if not expired(run, now, self.settings.days):
                    await pipe.unwatch()
                    return False
                attempts = {n: run.tasks[n].attempts for n in names} if run else {
                    n: 0 for n in names}
                name = (run.dag_name if run else None) or (dag.dag_name if dag else "")
                pipe.multi()
                pipe.unlink(*keys.run_keys(dag_id, attempts))
                pipe.zrem(keys.RUNS_ENDED, dag_id)
                runs_index.unindex(pipe, dag_id, name)
                pipe.xadd(keys.RUNS_DELETED, {"dagId": dag_id, "dagName": name},
                          maxlen=DELETED_STREAM_MAXLEN, approximate=True)
                pipe.zadd(keys.RETENTION_OBJECTS, {dag_id: now})
                await pipe.execute()
            except WatchError:
                log.info("run changed while retention looked at it; kept", extra=extra)
                return False
        self.forget(dag_id)
        if name:
            await runs_index.prune_name(self.redis, name)
        log.info("run deleted by retention", extra=log_fields(dagId=dag_id, dagName=name))
        return True

    async def purge_objects(self, dag_id: str, now: float) -> tuple[int, int]:
        """Delete the run's objects but those live memo entries point to; (deleted, kept)."""
        refs = sorted(str(v) for v in await self.redis.smembers(keys.memo_refs(dag_id)))
        entries: list[tuple[str | None, int]] = []
        if refs:
            async with self.redis.pipeline(transaction=False) as pipe:
                for fp in refs:
                    pipe.get(keys.memo(fp))
                    pipe.pttl(keys.memo(fp))
                replies = await pipe.execute()
            entries = list(zip(replies[::2], replies[1::2], strict=True))
        keep, until = memo_kept(dag_id, entries, now)
        listed = await self._list(objects.run_prefix(dag_id))
        doomed = objects_to_delete(listed, keep)
        for chunk in batches(doomed, S3_DELETE_BATCH):
            await self.s3.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
        kept = len(listed) - len(doomed)
        if until is not None and kept:
            await self.redis.zadd(keys.RETENTION_OBJECTS, {dag_id: until + MEMO_GRACE_S})
            log.info("%d objects kept for live memo entries", kept, extra=log_fields(dagId=dag_id))
        else:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(keys.RETENTION_OBJECTS, dag_id)
                pipe.delete(keys.memo_refs(dag_id))
                await pipe.execute()
        return len(doomed), kept

    async def _list(self, prefix: str) -> list[str]:
        found: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            found += [o["Key"] for o in page.get("Contents", [])]
        return found

