"""Resilience of the metrics service: restarts mid-stream and the bounded window."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from nats.js import JetStreamContext

from helios import keys as shared_keys
from helios import subjects
from helios.messages import RunEvent, TaskEvent
from helios.settings import Settings
from helios.states import RunState, TaskState
from services.metrics import keys
from services.metrics.service import MetricsOptions
from tests.metrics.support import (
    T0,
    RunSpec,
    TaskSpec,
    all_events,
    consumer_drained,
    get_json,
    metrics_path,
    publish_all,
    publish_raw,
    run_events,
    running,
    sample,
    start_service,
    summary_runs,
    wait_until,
)


async def snapshot(redis: aioredis.Redis, http: aiohttp.ClientSession, url: str) -> Any:
    _, _, body = await get_json(http, url + metrics_path(limit=100))
    ids = [str(i) for i in await redis.lrange(shared_keys.dag_runs("pipe"), 0, -1)]
    stored = {i: (await redis.hgetall(shared_keys.metrics(i)), await redis.get(keys.timings(i)))
              for i in ids}
    return body, ids, stored


@pytest.mark.parametrize("how", ["sigterm", "kill"])
async def test_restart_mid_stream_ends_with_the_same_numbers(
    settings: Settings, js: JetStreamContext, redis: aioredis.Redis,
    http: aiohttp.ClientSession, how: str,
) -> None:
    specs = summary_runs()
    retried = RunSpec("r0", start=T0 + 2000, duration=3.0, state=RunState.FAILED,
                      tasks=[TaskSpec("a", final=TaskState.FAILED)])
    events = all_events(specs) + run_events(retried)
    # The retry of r0: generation 1 re-runs `a` (attempt 2) and succeeds.
    common: dict[str, Any] = {"dagId": "r0", "dagName": "pipe", "useCache": True,
                              "taskCount": 1, "startedAt": T0 + 2000}
    events += [
        RunEvent(state=RunState.RUNNING, at=T0 + 2010, generation=1, **common),
        TaskEvent(dag_id="r0", dag_name="pipe", task="a", state=TaskState.PENDING, attempt=1,
                  at=T0 + 2010, reason="Retried"),
        TaskEvent(dag_id="r0", dag_name="pipe", task="a", state=TaskState.QUEUED, attempt=2,
                  at=T0 + 2011),
        TaskEvent(dag_id="r0", dag_name="pipe", task="a", state=TaskState.SUCCEEDED, attempt=2,
                  at=T0 + 2012),
        RunEvent(state=RunState.SUCCEEDED, at=T0 + 2013, endedAt=T0 + 2013, generation=1,
                 **common),
    ]
    await publish_all(js, events)

    # Reference: a service that never stopped.
    async with running(settings) as svc:
        await consumer_drained(js)
        expected = await snapshot(redis, http, svc.url)
    assert expected[1] == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert expected[0]["runs"][0]["status"] == "SUCCEEDED"
    assert expected[0]["runs"][0]["durationMs"] == 13000

    # Same stream, from scratch, with a stop in the middle of run r3's batch.
    await redis.flushall()
    await js.delete_consumer(subjects.STREAMS.runs, "metrics")
    reached, release = asyncio.Event(), asyncio.Event()

    async def gate(dag_id: str) -> None:
        if dag_id == "r3":
            reached.set()
            await release.wait()

    gated = MetricsOptions(ack_wait_s=1.0, fetch_timeout_s=0.2, batch=4, before_refresh=gate)
    first = await start_service(settings, gated)
    await asyncio.wait_for(reached.wait(), 10)
    if how == "kill":
        await first.kill()  # r3's events are stored but never acknowledged
    else:
        first.stop.set()
        release.set()
        await first.shutdown()
    info = await js.consumer_info(subjects.STREAMS.runs, "metrics")
    assert info.num_pending > 0, "stopped after the end of the stream"
    # SIGTERM finishes and acknowledges the in-flight batch; a kill leaves it pending.
    assert (info.num_ack_pending > 0) == (how == "kill")

    duplicates = sample("helios_metrics_events_total", outcome="duplicate")
    small = MetricsOptions(ack_wait_s=1.0, fetch_timeout_s=0.2, batch=4)
    async with running(settings, small) as svc:
        await consumer_drained(js)
        assert await snapshot(redis, http, svc.url) == expected
    # After a kill, the stored-but-unacknowledged events came back and changed nothing.
    redelivered = sample("helios_metrics_events_total", outcome="duplicate") - duplicates
    assert (redelivered > 0) == (how == "kill")


async def test_window_shows_the_newest_100_and_deletes_nothing(
    settings: Settings, js: JetStreamContext, redis: aioredis.Redis,
    http: aiohttp.ClientSession,
) -> None:
    ids = [f"w{i:03d}" for i in range(105)]
    for dag_id in ids[:5]:  # keys other services wrote for the runs that leave the window
        await redis.set(shared_keys.definition(dag_id), "{}")
        await redis.rpush(shared_keys.task_logs(dag_id, "t"), "line")
    events: list[TaskEvent | RunEvent] = []
    for i, dag_id in enumerate(ids):
        events += run_events(RunSpec(dag_id, start=T0 + i, duration=0.5, tasks=[TaskSpec("t")]))
    await asyncio.gather(*(publish_all(js, events[i::8]) for i in range(8)))
    async with running(settings) as svc:
        await consumer_drained(js)
        window = await redis.lrange(shared_keys.dag_runs("pipe"), 0, -1)
        assert window == ids[:4:-1]  # w104 .. w005
        for dag_id in ids[:5]:  # out of the window, and nothing else
            assert await redis.get(shared_keys.definition(dag_id)) == "{}"
            assert await redis.lrange(shared_keys.task_logs(dag_id, "t"), 0, -1) == ["line"]
            assert (await redis.hgetall(shared_keys.metrics(dag_id)))["status"] == "SUCCEEDED"
        assert await redis.zcard(keys.order("pipe")) == 105
        _, _, body = await get_json(http, svc.url + metrics_path(limit=100))
        assert len(body["runs"]) == 100 and body["runs"][0]["dagId"] == "w104"

        # Retention deletes w104 and w050 (and says so on runs:deleted): the window is
        # again the newest 100 of the runs that still exist.
        for gone in ("w104", "w050"):
            await redis.xadd(shared_keys.RUNS_DELETED, {"dagId": gone, "dagName": "pipe"})

        async def current() -> list[str]:
            return [str(v) for v in await redis.lrange(shared_keys.dag_runs("pipe"), 0, -1)]

        expected = [i for i in ids[::-1] if i not in ("w104", "w050")][:100]
        await wait_until(current, lambda w: w == expected, what="the window to refill")
        assert await redis.zcard(keys.order("pipe")) == 103

        # A late event of a deleted run does not bring it back.
        late = TaskEvent(dag_id="w104", dag_name="pipe", task="t", state=TaskState.SUCCEEDED,
                         attempt=5, at=T0 + 500)
        await publish_raw(js, late, "late")
        await consumer_drained(js)
        assert await redis.keys("dag:w104:*") == []
        assert await current() == expected
