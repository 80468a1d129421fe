"""The runs index against the session's real Valkey: the writers keep every set in step
with the run state (submit, end, retry, retention), and the reader pages through it
without duplicates or skips while new runs arrive, whatever the filters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from helios import keys, runs_index
from helios.runs_index import Position, decode_cursor
from helios.settings import RetentionSettings, Settings
from helios.states import RunState
from helios.store import open_redis
from services.scheduler.index import backfill
from services.scheduler.retention import DAY_S, Retention


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = open_redis(settings.redis)
    try:
        yield client
    finally:
        await client.aclose()


def rid(n: int) -> str:
    return f"{n:032x}"


async def submit(r: aioredis.Redis, n: int, name: str, at: float) -> str:
    """What the api writes at submission: the run hash and its index entry, one MULTI."""
    dag_id = rid(n)
    async with r.pipeline(transaction=True) as pipe:
        pipe.hset(keys.run(dag_id), mapping={"dagName": name, "state": "RUNNING", "useCache": "true",
                                             "submittedAt": repr(at), "taskCount": "2"})
        runs_index.index_submitted(pipe, dag_id, name, at)
        await pipe.execute()
    return dag_id


async def set_state(r: aioredis.Redis, dag_id: str, name: str, at: float, state: RunState,
                    ended: float | None = None) -> None:
    """What the scheduler's store writes on a run state change."""
    async with r.pipeline(transaction=True) as pipe:
        pipe.hset(keys.run(dag_id), mapping={"state": state.value, "startedAt": repr(at + 1),
                                             "endedAt": repr(ended) if ended else ""})
        runs_index.index_state(pipe, dag_id, name, at, state)
        await pipe.execute()


async def walk(r: aioredis.Redis, limit: int, **filters: object) -> list[str]:
    seen: list[str] = []
    cursor: Position | None = None
    while True:
        page = await runs_index.list_runs(r, limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
        assert len(page.runs) <= limit
        seen += [run.dag_id for run in page.runs]
        if page.next is None:
            return seen
        cursor = decode_cursor(page.next)


async def test_states_move_with_the_run_and_filters_combine(redis: aioredis.Redis) -> None:
    a1 = await submit(redis, 1, "etl", 100.0)
    b1 = await submit(redis, 2, "report", 101.0)
    a2 = await submit(redis, 3, "etl", 102.0)
    assert await walk(redis, 50) == [a2, b1, a1]
    await set_state(redis, a1, "etl", 100.0, RunState.FAILED, ended=110.0)
    await set_state(redis, b1, "report", 101.0, RunState.SUCCEEDED, ended=111.0)
    assert await walk(redis, 50, states=[RunState.RUNNING]) == [a2]
    assert await walk(redis, 50, states=[RunState.FAILED, RunState.SUCCEEDED]) == [b1, a1]
    assert await walk(redis, 50, name="etl") == [a2, a1]
    assert await walk(redis, 50, name="etl", states=[RunState.FAILED]) == [a1]
    assert await walk(redis, 50, name="nope") == []
    # A retry makes the failed run RUNNING again: it leaves FAILED, keeps its place.
    await set_state(redis, a1, "etl", 100.0, RunState.RUNNING)
    assert await walk(redis, 50, states=[RunState.FAILED]) == []
    assert await walk(redis, 50, name="etl", states=[RunState.RUNNING]) == [a2, a1]
    page = await runs_index.list_runs(redis, limit=1)
    row = page.runs[0].model_dump(mode="json", by_alias=True)
    assert row == {"dagId": a2, "dagName": "etl", "state": "RUNNING", "submittedAt": 102.0,
                   "startedAt": None, "endedAt": None, "durationMs": None, "taskCount": 2,
                   "useCache": True}
    assert await runs_index.dag_names(redis) == ["etl", "report"]


async def test_pages_stay_stable_while_runs_arrive(redis: aioredis.Redis) -> None:
    ids = [await submit(redis, n, "etl" if n % 2 else "load", 1000.0 + n) for n in range(1, 8)]
    # Three runs submitted in the same instant: their order is by id, and paging one at a
    # time still shows each exactly once.
    ties = [await submit(redis, n, "etl", 1000.5) for n in (20, 21, 22)]
    expected = sorted(ids + ties, key=lambda d: (redis_score(d, ids, ties), d), reverse=True)
    seen: list[str] = []
    cursor: Position | None = None
    extra = 100
    while True:
        page = await runs_index.list_runs(redis, limit=2, cursor=cursor)
        seen += [r.dag_id for r in page.runs]
        # New runs arrive between pages (newer than anything already shown).
        extra += 1
        await submit(redis, extra, "etl", 5000.0 + extra)
        if page.next is None:
            break
        cursor = decode_cursor(page.next)
    assert seen == expected
    # The same under a state filter merged from two sets, one run at a time.
    await set_state(redis, ids[2], "etl", 1003.0, RunState.FAILED, ended=2000.0)
    both = await walk(redis, 1, states=[RunState.RUNNING, RunState.FAILED])
    assert len(both) == len(set(both)) == len(ids) + len(ties) + (extra - 100)


def redis_score(dag_id: str, ids: list[str], ties: list[str]) -> float:
    return 1000.5 if dag_id in ties else 1000.0 + ids.index(dag_id) + 1


async def test_thousands_of_runs_page_by_position(redis: aioredis.Redis) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(1500):
            runs_index.index_submitted(pipe, rid(n), f"n{n % 3}", 10_000.0 + n)
            pipe.hset(keys.run(rid(n)), mapping={"dagName": f"n{n % 3}", "state": "RUNNING"})
        await pipe.execute()
    page = await runs_index.list_runs(redis, name="n1", limit=200)
    assert [r.dag_id for r in page.runs][:2] == [rid(1498), rid(1495)]
    assert len(await walk(redis, 200, name="n2")) == 500


async def test_retention_and_a_failed_submission_leave_no_entry(
        redis: aioredis.Redis, settings: Settings) -> None:
    old = await submit(redis, 1, "gone", 10.0)
    await set_state(redis, old, "gone", 10.0, RunState.SUCCEEDED, ended=20.0)
    kept = await submit(redis, 2, "kept", 30.0)
    retention = Retention(redis, None, settings.s3.bucket, RetentionSettings(days=1))
    assert await retention.delete_run(old, now=20.0 + 2 * DAY_S)
    assert await walk(redis, 10) == [kept]
    assert await walk(redis, 10, states=[RunState.SUCCEEDED]) == []
    assert await runs_index.dag_names(redis) == ["kept"]
    assert await redis.zscore(keys.RUN_NAMES, "gone") is None  # pruned, not only skipped
    # The api's undo of a submission it could not publish.
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.run(kept))
        runs_index.unindex(pipe, kept, "kept")
        await pipe.execute()
    assert await walk(redis, 10) == []
    assert await runs_index.dag_names(redis) == []  # a name left without runs is skipped
    leftovers = [k async for k in redis.scan_iter("runs:*")
                 if k not in (keys.RUN_NAMES, keys.RUNS_DELETED)]
    assert leftovers == [], leftovers


async def test_runs_stored_before_the_index_are_backfilled_once(redis: aioredis.Redis) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for n, state in enumerate(["RUNNING", "SUCCEEDED", "FAILED"], start=1):
            pipe.hset(keys.run(rid(n)), mapping={"dagName": "old", "state": state,
                                                 "submittedAt": repr(100.0 + n)})
        pipe.hset(keys.run(rid(9)), mapping={"state": "RUNNING"})  # no name: not indexable
        pipe.set("dag:not-a-run-id:run", "x")  # matched by the pattern, not a run
        await pipe.execute()
    await submit(redis, 4, "new", 200.0)
    assert await backfill(redis, batch=2) == 4  # 3 old runs, and the new one again (idempotent)
    assert await walk(redis, 2) == [rid(4), rid(3), rid(2), rid(1)]
    assert await walk(redis, 10, name="old", states=[RunState.FAILED]) == [rid(3)]
    await redis.hset(keys.run(rid(5)), mapping={"dagName": "old", "submittedAt": "300"})
    assert await backfill(redis) == 0  # done once per Redis: the marker is set
    assert rid(5) not in await walk(redis, 10)
