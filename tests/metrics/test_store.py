"""The Redis adapter against a real Valkey: atomic apply, conditional write, the window."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from helios import keys as shared_keys
from helios.messages import RunEvent, TaskEvent
from helios.settings import Settings
from helios.states import RunState, TaskState
from helios.store import open_redis
from services.metrics import keys
from services.metrics.store import MetricsStore, Outcome
from tests.metrics.support import RunSpec, TaskSpec, run_events

T0 = 1_700_000_000.0


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = open_redis(settings.redis)
    yield client
    await client.aclose()


def tiny(dag_id: str, start: float, name: str = "pipe") -> RunSpec:
    return RunSpec(dag_id, start=start, duration=1.0, dag_name=name, tasks=[TaskSpec("t")])


async def apply_all(store: MetricsStore, events: list[TaskEvent | RunEvent]) -> list[Outcome]:
    outcomes = [(await store.apply(e)).outcome for e in events]
    for dag_id in {e.dag_id for e in events}:
        await store.refresh(dag_id)
    return outcomes


async def test_redelivery_and_reordering_change_nothing(redis: aioredis.Redis) -> None:
    store = MetricsStore(redis)
    events = run_events(tiny("r1", T0))
    assert set(await apply_all(store, events)) == {Outcome.APPLIED}
    expected = await redis.hgetall(shared_keys.metrics("r1"))
    assert expected["status"] == "SUCCEEDED" and expected["taskSucceeded"] == "1"

    assert set(await apply_all(store, events[::-1])) == {Outcome.DUPLICATE}
    assert await redis.hgetall(shared_keys.metrics("r1")) == expected

    # The same events in reverse order into a fresh store end in the same place.
    await redis.flushall()
    await apply_all(MetricsStore(redis), events[::-1])
    assert await redis.hgetall(shared_keys.metrics("r1")) == expected


async def test_a_stale_snapshot_never_overwrites_newer_metrics(redis: aioredis.Redis) -> None:
    store = MetricsStore(redis)
    events = run_events(tiny("r1", T0))
    for e in events[:-1]:
        await store.apply(e)
    stale = int(await redis.hget(keys.state("r1"), keys.STATE_VERSION_FIELD) or 0)
    await store.apply(events[-1])  # the run ends while a refresh computes
    written = await store._write(
        keys=[shared_keys.metrics("r1"), keys.timings("r1"), keys.state("r1"),
              keys.deleted("pipe")],
        args=["r1", stale, keys.STATE_VERSION_FIELD, "{}", "status", "RUNNING"],
    )
    assert written == 0
    assert (await store.refresh("r1")) is not None
    assert await redis.hget(shared_keys.metrics("r1"), "status") == "SUCCEEDED"


async def test_window_is_a_view_ordered_by_start(redis: aioredis.Redis) -> None:
    store = MetricsStore(redis, window=3)
    # Arrival order differs from start order; runs leaving the window keep every key.
    runs = [tiny("r2", T0 + 2), tiny("r1", T0 + 1), tiny("r4", T0 + 4), tiny("r3", T0 + 3)]
    await redis.set(shared_keys.definition("r1"), "{}")
    await redis.rpush(shared_keys.task_logs("r1", "t"), "x")
    for spec in runs:
        await apply_all(store, run_events(spec))
    assert await redis.lrange(shared_keys.dag_runs("pipe"), 0, -1) == ["r4", "r3", "r2"]
    assert await redis.zcard(keys.order("pipe")) == 4
    assert await redis.get(shared_keys.definition("r1")) == "{}"
    assert await redis.lrange(shared_keys.task_logs("r1", "t"), 0, -1) == ["x"]
    assert (await redis.hgetall(shared_keys.metrics("r1")))["status"] == "SUCCEEDED"

    # A late event of a run outside the window is applied, and stays outside.
    late = TaskEvent(dag_id="r1", dag_name="pipe", task="t", state=TaskState.SUCCEEDED,
                     attempt=9, at=T0 + 50)
    assert (await store.apply(late)).outcome is Outcome.APPLIED
    assert await redis.lrange(shared_keys.dag_runs("pipe"), 0, -1) == ["r4", "r3", "r2"]

    # An even older run arriving now lands outside the window; the window is unchanged.
    await apply_all(store, run_events(tiny("r0", T0)))
    assert await redis.lrange(shared_keys.dag_runs("pipe"), 0, -1) == ["r4", "r3", "r2"]
    assert await redis.exists(shared_keys.metrics("r0")) == 1


async def test_a_deleted_run_leaves_the_window_which_refills(redis: aioredis.Redis) -> None:
    store = MetricsStore(redis, window=3)
    for i in range(5):
        await apply_all(store, run_events(tiny(f"r{i}", T0 + i)))
    assert await redis.lrange(shared_keys.dag_runs("pipe"), 0, -1) == ["r4", "r3", "r2"]

    # Retention deleted r3 (its metrics keys went with it): the window shows the
    # newest 3 runs that still exist.
    await redis.delete(*(k("r3") for k in (shared_keys.metrics, keys.state, keys.seen,
                                           keys.timings)))
    assert await store.prune("r3", "pipe", T0) is True
    assert await redis.lrange(shared_keys.dag_runs("pipe"), 0, -1) == ["r4", "r2", "r1"]
    assert await store.prune("r3", "pipe", T0) is False  # idempotent
    # A run outside the window is pruned without touching the window.
    assert await store.prune("r0", "pipe", T0) is True
    assert await redis.lrange(shared_keys.dag_runs("pipe"), 0, -1) == ["r4", "r2", "r1"]
    assert await redis.zcard(keys.order("pipe")) == 3

    # A late or replayed event of a deleted run does not bring it back.
    for e in run_events(tiny("r3", T0 + 3)):
        assert (await store.apply(e)).outcome is Outcome.DELETED
    assert await store.refresh("r3") is None
    assert await redis.keys("dag:r3:*") == []
    assert await redis.lrange(shared_keys.dag_runs("pipe"), 0, -1) == ["r4", "r2", "r1"]


async def test_window_runs_reads_newest_first(redis: aioredis.Redis) -> None:
    store = MetricsStore(redis)
    for i in range(3):
        spec = tiny(f"r{i}", T0 + i)
        spec.state = RunState.FAILED if i == 1 else RunState.SUCCEEDED
        await apply_all(store, list(run_events(spec)))
    runs, timings = await store.window_runs("pipe", 2)
    assert [(r.dag_id, r.status) for r in runs] == [("r2", "SUCCEEDED"), ("r1", "FAILED")]
    assert [sorted(t) for t in timings] == [["t"], ["t"]]
    assert await store.window_runs("other", 10) == ([], [])
