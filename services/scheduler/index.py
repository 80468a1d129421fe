"""The runs list index for runs stored before it existed: indexed once, in the background.

Runs submitted since the index exists are indexed as they are written (`helios.runs_index`
writers). A data folder or Redis from before has run hashes and no entries, so the first
scheduler to start on it walks the run hashes once (SCAN, in batches) and records
`runs:index:version` when done; every later start reads that and does nothing. The
listing itself never scans.

A batch's run hashes are WATCHed while they are read and indexed: a state change made
meanwhile (by this scheduler's engine or another replica) aborts the batch, which is read
again, so a backfill never writes a state older than the one the engine wrote.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from helios import keys, runs_index
from helios.definitions import is_run_id
from helios.states import RunState

log = logging.getLogger(__name__)

VERSION = "1"
BATCH = 500
ATTEMPTS = 5  # a batch that keeps changing under us is left for the next start


def run_id_of_key(key: str) -> str | None:
    """`dag:{id}:run` -> id (None for anything else the pattern matched)."""
    parts = key.split(":")
    if len(parts) == 3 and parts[0] == "dag" and parts[2] == "run" and is_run_id(parts[1]):
        return parts[1]
    return None


def entry(values: list[str | None]) -> tuple[str, float, RunState] | None:
    """(dagName, submittedAt, state) of a run hash's fields, None when it cannot be indexed."""
    name, state, submitted, started, ended = values
    if not name:
        return None
    try:
        at = float(submitted or started or ended or 0)
        run_state = RunState(state) if state else RunState.RUNNING
    except ValueError:
        return None
    return name, at, run_state


async def _index_batch(redis: aioredis.Redis, ids: list[str]) -> tuple[int, bool]:
    """(runs indexed, done): done is False when the batch kept changing under us."""
    run_keys = [keys.run(i) for i in ids]
    for _ in range(ATTEMPTS):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(*run_keys)
                async with redis.pipeline(transaction=False) as reads:
                    for key in run_keys:
                        reads.hmget(key, "dagName", "state", "submittedAt", "startedAt", "endedAt")
                    rows = await reads.execute()
                pipe.multi()
                count = 0
                for dag_id, row in zip(ids, rows, strict=True):
                    found = entry(row)
                    if found is not None:
                        runs_index.index_state(pipe, dag_id, *found)
                        count += 1
                if count:
                    await pipe.execute()
                else:
                    await pipe.reset()
                return count, True
            except WatchError:
                continue
    return 0, False


async def backfill(redis: aioredis.Redis, batch: int = BATCH) -> int:
    """Index every run hash once per Redis; returns how many runs it indexed."""
    if await redis.get(keys.RUNS_INDEX_VERSION) == VERSION:
        return 0
    indexed, complete, cursor = 0, True, 0
    while True:
        cursor, found = await redis.scan(cursor, match="dag:*:run", count=batch)
        ids = [i for k in found if (i := run_id_of_key(str(k))) is not None]
        if ids:
            count, done = await _index_batch(redis, ids)
            indexed += count
            complete &= done
        if cursor == 0:
            break
        await asyncio.sleep(0)  # one batch at a time; the engine's writes go first
    if complete:
        await redis.set(keys.RUNS_INDEX_VERSION, VERSION)
    if indexed or not complete:
        log.info("runs list index backfilled: %d runs%s", indexed,
                 "" if complete else " (some kept changing; again at the next start)")
    return indexed


RETRY_S = (1.0, 5.0, 30.0)  # after a failed pass (Redis unreachable): then every 30 s


async def backfill_until_done(redis: aioredis.Redis) -> int:
    """`backfill`, passed again after a failure until it completes (cancelled at shutdown)."""
    failures = 0
    while True:
        try:
            return await backfill(redis)
        except Exception:
            log.exception("runs list index backfill failed; trying again")
            await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
            failures += 1
