"""The metrics service in-process against real NATS JetStream and Valkey, over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import nats
import pytest
import redis.asyncio as aioredis
from nats.js import JetStreamContext
from prometheus_client import REGISTRY

from helios import bus, subjects
from helios import keys as shared_keys
from helios.devstack.procs import free_port
from helios.messages import RunEvent, TaskEvent
from helios.settings import Settings
from helios.states import RunState, TaskState
from helios.store import open_redis
from services.metrics import keys
from services.metrics.service import MetricsOptions
from services.metrics.store import MetricsStore
from tests.metrics.support import (
    EXPECTED_SUMMARY,
    T0,
    RunSpec,
    TaskSpec,
    consumer_drained,
    get_json,
    publish_raw,
    run_events,
    running,
    start_service,
    summary_runs,
    wait_until,
)

ARCHITECTURE_FIELDS = {
    "dagId", "dagName", "startTime", "endTime", "durationMs", "status", "cacheEnabled",
    "cacheHit", "taskCount", "taskSucceeded", "taskFailed", "taskUpstreamFailed",
    "cacheHitTasks", "cacheMissTasks", "nodes", "memoizedTasks",
}


@pytest.fixture
async def js(settings: Settings) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(settings.nats.url)
    jsc = nc.jetstream()
    await bus.ensure_streams(jsc, subjects.STREAMS)
    yield jsc
    await nc.close()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = open_redis(settings.redis)
    yield client
    await client.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def publish_all(js: JetStreamContext, events: list[TaskEvent | RunEvent]) -> None:
    for event in events:
        subject = (subjects.run_event(event.dag_id) if isinstance(event, RunEvent)
                   else subjects.task_event(event.dag_id, event.task))
        await bus.publish(js, subject, event)


def all_events(specs: list[RunSpec]) -> list[TaskEvent | RunEvent]:
    return [e for spec in reversed(specs) for e in run_events(spec)]  # oldest run first


def metrics_path(name: str = "pipe", limit: int | None = None) -> str:
    query = "" if limit is None else f"?limit={limit}"
    return f"/api/v1/dags/{name}/metrics{query}"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_endpoint_serves_known_runs_and_their_summary(
    settings: Settings, js: JetStreamContext, redis: aioredis.Redis,
    http: aiohttp.ClientSession,
) -> None:
    await publish_all(js, all_events(summary_runs()))
    async with running(settings) as svc:
        await consumer_drained(js)
        status, ctype, body = await get_json(http, svc.url + metrics_path())
        assert (status, ctype) == (200, "application/json")
        assert body["dagName"] == "pipe" and body["limit"] == 10
        assert [r["dagId"] for r in body["runs"]] == ["r1", "r2", "r3", "r4", "r5"]
        assert body["summary"] == EXPECTED_SUMMARY
        first = body["runs"][0]
        assert set(first) >= ARCHITECTURE_FIELDS
        assert first | {"startTime": None} == first | {
            "dagId": "r1", "status": "SUCCEEDED", "durationMs": 10000, "cacheEnabled": True,
            "cacheHit": "Hit", "taskCount": 2, "taskSucceeded": 2, "cacheHitTasks": 1,
            "nodes": ["node-a"], "startTime": None,
        }
        assert set(await redis.hgetall(shared_keys.metrics("r1"))) >= ARCHITECTURE_FIELDS

        _, _, two = await get_json(http, svc.url + metrics_path(limit=2))
        assert [r["dagId"] for r in two["runs"]] == ["r1", "r2"]
        assert two["summary"]["runs"] == 2 and two["summary"]["nonCached"]["count"] == 0

        async with http.get(svc.url + "/metrics") as resp:
            text = await resp.text()
        assert "helios_metrics_run_duration_seconds_count" in text
        assert "helios_metrics_cache_hits_total" in text
        async with http.get(svc.url + "/readyz") as resp:
            assert resp.status == 200


async def test_duplicated_and_reordered_events_count_once(
    settings: Settings, js: JetStreamContext, http: aiohttp.ClientSession,
) -> None:
    events = all_events(summary_runs())
    hits_before = sample("helios_metrics_cache_hits_total")
    dup_before = sample("helios_metrics_events_total", outcome="duplicate")
    runs_before = sample("helios_metrics_run_duration_seconds_count",
                         status="SUCCEEDED", cache="true")
    await publish_all(js, events)
    # Redeliveries JetStream cannot de-duplicate: other message ids, reversed order.
    for event in reversed(events):
        await publish_raw(js, event, f"again:{event.msg_id}")
    async with running(settings) as svc:
        await consumer_drained(js)
        _, _, body = await get_json(http, svc.url + metrics_path())
    assert body["summary"] == EXPECTED_SUMMARY
    assert sample("helios_metrics_cache_hits_total") - hits_before == 3  # 2 + 1, once
    assert sample("helios_metrics_events_total", outcome="duplicate") - dup_before == len(events)
    assert sample("helios_metrics_run_duration_seconds_count",
                  status="SUCCEEDED", cache="true") - runs_before == 2


async def snapshot(redis: aioredis.Redis, http: aiohttp.ClientSession, url: str) -> Any:
    _, _, body = await get_json(http, url + metrics_path(limit=100))
    ids = [str(i) for i in await redis.lrange(shared_keys.dag_runs("pipe"), 0, -1)]
    stored = {i: (await redis.hgetall(shared_keys.metrics(i)), await redis.get(keys.timings(i)))
              for i in ids}
    return body, ids, stored


@pytest.mark.parametrize("how", ["sigterm", "kill"])
async def test_restart_mid_stream_ends_with_the_same_numbers(
    settings: Settings, js: JetStreamContext, redis: aioredis.Redis,
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, how: str,
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
        TaskEvent(dagId="r0", dagName="pipe", task="a", state=TaskState.PENDING, attempt=1,
                  at=T0 + 2010, reason="Retried"),
        TaskEvent(dagId="r0", dagName="pipe", task="a", state=TaskState.QUEUED, attempt=2,
                  at=T0 + 2011),
        TaskEvent(dagId="r0", dagName="pipe", task="a", state=TaskState.SUCCEEDED, attempt=2,
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
    original = MetricsStore.refresh

    async def gated(self: MetricsStore, dag_id: str) -> Any:
        if dag_id == "r3":
            reached.set()
            await release.wait()
        return await original(self, dag_id)

    monkeypatch.setattr(MetricsStore, "refresh", gated)
    small = MetricsOptions(ack_wait_s=1.0, fetch_timeout_s=0.2, batch=4)
    first = await start_service(settings, small)
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
    monkeypatch.setattr(MetricsStore, "refresh", original)

    duplicates = sample("helios_metrics_events_total", outcome="duplicate")
    async with running(settings, small) as svc:
        await consumer_drained(js)
        assert await snapshot(redis, http, svc.url) == expected
    # After a kill, the stored-but-unacknowledged events came back and changed nothing.
    redelivered = sample("helios_metrics_events_total", outcome="duplicate") - duplicates
    assert (redelivered > 0) == (how == "kill")


async def test_window_keeps_100_runs_and_deletes_the_rest(
    settings: Settings, js: JetStreamContext, redis: aioredis.Redis,
    http: aiohttp.ClientSession,
) -> None:
    ids = [f"w{i:03d}" for i in range(105)]
    for dag_id in ids[:5]:  # keys other services wrote for the runs that will fall out
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
        for dag_id in ids[:5]:
            assert await redis.keys(f"dag:{dag_id}:*") == []
        assert await redis.zcard(keys.order("pipe")) == 100
        assert await redis.smembers(keys.SWEEP) == set()
        _, _, body = await get_json(http, svc.url + metrics_path(limit=100))
        assert len(body["runs"]) == 100 and body["runs"][0]["dagId"] == "w104"

        # A late event of an evicted run does not bring it back.
        late = TaskEvent(dagId="w000", dagName="pipe", task="t", state=TaskState.SUCCEEDED,
                         attempt=5, at=T0 + 500)
        await publish_raw(js, late, "late")
        await consumer_drained(js)
        assert await redis.keys("dag:w000:*") == []
        assert await redis.llen(shared_keys.dag_runs("pipe")) == 100


@pytest.mark.parametrize("path", [
    metrics_path(limit=0), metrics_path(limit=101), metrics_path(limit=-1),
    "/api/v1/dags/pipe/metrics?limit=abc", "/api/v1/dags/pipe/metrics?limit=1.5",
    "/api/v1/dags/pipe/metrics?limit=", "/api/v1/dags/pipe/metrics?limit=1&limit=2",
    "/api/v1/dags/Bad_Name/metrics", f"/api/v1/dags/{'a' * 64}/metrics",
])
async def test_bad_requests_are_problems(
    settings: Settings, http: aiohttp.ClientSession, path: str,
) -> None:
    async with running(settings) as svc:
        status, ctype, body = await get_json(http, svc.url + path)
    assert (status, ctype, body["status"], body["title"]) == (
        400, "application/problem+json", 400, "Bad Request")
    assert body["detail"].split(":")[0] in {"limit", "dagName"}


async def test_unknown_dag_and_limits(settings: Settings, http: aiohttp.ClientSession) -> None:
    async with running(settings) as svc:
        for path, limit in [(metrics_path("nothing-yet"), 10), (metrics_path(limit=100), 100),
                            (metrics_path(limit=1), 1)]:
            status, _, body = await get_json(http, svc.url + path)
            assert status == 200 and body["runs"] == [] and body["limit"] == limit
            assert body["summary"]["runs"] == 0 and body["summary"]["lastRun"] is None


async def test_poison_event_is_dropped_and_the_rest_flows(
    settings: Settings, js: JetStreamContext, redis: aioredis.Redis,
) -> None:
    before = sample("helios_metrics_invalid_events_total")
    await js.publish(subjects.run_event("x"), b'{"type": "run", "nonsense": true}')
    await publish_all(js, run_events(RunSpec("ok1", start=T0, duration=1.0)))
    async with running(settings):
        await consumer_drained(js)
        await wait_until(lambda: redis.hget(shared_keys.metrics("ok1"), "status"),
                         lambda v: v == "SUCCEEDED", what="ok1 metrics")
    assert sample("helios_metrics_invalid_events_total") - before == 1


async def test_process_exits_zero_on_sigterm(
    settings: Settings, js: JetStreamContext, redis: aioredis.Redis,
    http: aiohttp.ClientSession,
) -> None:
    """`python -m services.metrics` as a deployment runs it: ready, consuming, clean exit."""
    port = free_port()
    env = {**os.environ, "HELIOS_NATS_URL": settings.nats.url,
           "HELIOS_REDIS_URL": settings.redis.url, "HELIOS_HTTP_HOST": "127.0.0.1",
           "HELIOS_HTTP_PORT": str(port), "HELIOS_LOG_FORMAT": "json"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.metrics", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async def ready() -> int:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    return resp.status
            except aiohttp.ClientConnectionError:
                return 0

        await wait_until(ready, lambda s: s == 200, what="/readyz")
        await publish_all(js, run_events(RunSpec("p1", start=T0, duration=1.0)))
        await consumer_drained(js)
        assert await redis.hget(shared_keys.metrics("p1"), "status") == "SUCCEEDED"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    lines = [json.loads(line) for line in (await proc.stderr.read()).decode().splitlines()]
    assert [line for line in lines if line["level"] == "error"] == []
    assert lines[-1]["msg"] == "stopped cleanly"
