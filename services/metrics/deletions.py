"""Runs deleted by retention leave the metrics window: follow the `runs:deleted` stream.

Retention (in the scheduler) is the only deleter of runs; it appends {dagId, dagName}
to `runs:deleted` in the same MULTI that deletes the run's keys. This service owns its
window, so it is the one that takes a deleted run out of `metrics:order:{name}` and
`dagRuns:{name}` (`MetricsStore.prune`, idempotent), remembering how far it has read in
`metrics:deletions:cursor`: a restart resumes there, and re-reading an entry is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from helios import keys as shared_keys
from helios.logs import log_fields
from services.metrics import keys
from services.metrics.store import MetricsStore

log = logging.getLogger(__name__)

START = "0-0"
RETRY_S = 1.0


async def apply_deletions(redis: aioredis.Redis, store: MetricsStore, cursor: str, *,
                          block_ms: int | None = None, count: int = 500) -> str:
    """Prune the runs deleted after `cursor`; returns the new cursor (stored too).
    `block_ms` waits that long for a first entry (None: answer at once)."""
    replies: Any = await redis.xread({shared_keys.RUNS_DELETED: cursor}, count=count,
                                     block=block_ms)
    last = cursor
    for _stream, entries in replies or []:
        for entry_id, fields in entries:
            dag_id, dag_name = fields.get("dagId"), fields.get("dagName")
            if dag_id and dag_name:
                if await store.prune(dag_id, dag_name, time.time()):
                    log.info("deleted run left the metrics window",
                             extra=log_fields(dagId=dag_id, dagName=dag_name))
            else:
                log.error("malformed runs:deleted entry skipped: %r", fields)
            last = entry_id
    if last != cursor:
        await redis.set(keys.DELETIONS_CURSOR, last)
    return last


async def follow_deletions(redis: aioredis.Redis, store: MetricsStore, stop: asyncio.Event,
                           *, block_ms: int = 1000) -> None:
    """Until `stop`: a blocking read (shorter than the socket timeout), prune, repeat.
    A store outage is waited out, never fatal: the entries stay in the stream."""
    cursor: str | None = None
    while not stop.is_set():
        try:
            if cursor is None:
                stored: Any = await redis.get(keys.DELETIONS_CURSOR)
                cursor = str(stored) if stored else START
            cursor = await apply_deletions(redis, store, cursor, block_ms=block_ms)
        except RedisError as exc:
            log.warning("following runs:deleted failed (%s); retrying in %.0fs", exc, RETRY_S)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), RETRY_S)
