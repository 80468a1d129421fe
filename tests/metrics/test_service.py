"""The metrics service in-process against real NATS JetStream and Valkey, over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import aiohttp
import pytest
import redis.asyncio as aioredis
from nats.js import JetStreamContext

from helios import keys as shared_keys
from helios import subjects
from helios.devstack.procs import free_port
from helios.settings import Settings
from tests.metrics.support import (
    EXPECTED_SUMMARY,
    T0,
    RunSpec,
    all_events,
    consumer_drained,
    get_json,
    metrics_path,
    publish_all,
    publish_raw,
    run_events,
    running,
    sample,
    summary_runs,
    wait_until,
)

ARCHITECTURE_FIELDS = {
    "dagId", "dagName", "startTime", "endTime", "durationMs", "status", "cacheEnabled",
    "cacheHit", "taskCount", "taskSucceeded", "taskFailed", "taskUpstreamFailed",
    "cacheHitTasks", "cacheMissTasks", "nodes", "memoizedTasks",
}


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
