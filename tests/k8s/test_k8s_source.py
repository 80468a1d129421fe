"""The watcher side against the stand-in: list+watch, reports, logs, Job clean-up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helios import objects, tasklogs
from helios.executors.kubernetes.executor import KubernetesExecutor
from helios.s3 import open_s3
from helios.settings import Settings
from helios.store import open_redis

from .helpers import Recorder, dispatch, kube_api, running_source
from .standin import Cluster


@contextlib.asynccontextmanager
async def stores(settings: Settings) -> AsyncIterator[tuple[Any, Any]]:
    redis = open_redis(settings.redis)
    try:
        async with open_s3(settings.s3) as s3:
            yield redis, s3
    finally:
        await redis.aclose()


async def launch(settings: Settings, *dispatches: Any) -> None:
    async with kube_api(settings) as api:
        executor = KubernetesExecutor(api, settings)
        for d in dispatches:
            await executor.launch(d)


async def archived(s3: Any, settings: Settings, dag_id: str, task: str, attempt: int) -> str:
    obj = await s3.get_object(Bucket=settings.s3.bucket, Key=objects.log(dag_id, task, attempt))
    async with obj["Body"] as body:
        return (await body.read()).decode()


async def test_success_reports_running_then_succeeded_and_archives_logs(
        k8s: Settings, cluster: Cluster) -> None:
    sink = Recorder()
    d = dispatch({"name": "hello", "command": ["/bin/sh", "-c", "echo hello from $0; echo two"]})
    async with stores(k8s) as (redis, s3), running_source(k8s, redis, s3, sink):
        await launch(k8s, d)
        done = await sink.terminal("hello")
        assert done.phase == "succeeded", done
        assert sink.phases("hello") == ["running", "succeeded"]
        assert done.exit_code == 0 and done.node == "node-a"
        t = done.timings
        assert t.queued_at and t.scheduled_at and t.started_at and t.finished_at
        assert t.queued_at <= t.scheduled_at <= t.started_at <= t.finished_at
        lines = await tasklogs.read_lines(redis, "run-1", "hello")
        assert lines == ["hello from /bin/sh", "two"]
        assert await archived(s3, k8s, "run-1", "hello", 1) == "hello from /bin/sh\ntwo\n"
        # The watcher deletes the Job once its logs are safe.
        async with asyncio.timeout(5):
            while cluster.jobs() or cluster.pods():
                await asyncio.sleep(0.05)


async def test_failure_reports_exit_code(k8s: Settings, cluster: Cluster) -> None:
    sink = Recorder()
    d = dispatch({"name": "boom", "command": ["/bin/sh", "-c", "echo oops >&2; exit 3"]})
    async with stores(k8s) as (redis, s3), running_source(k8s, redis, s3, sink):
        await launch(k8s, d)
        done = await sink.terminal("boom")
    assert (done.phase, done.exit_code, done.reason) == ("failed", 3, "Error")
    assert done.message == "command exited with code 3"


@pytest.mark.parametrize("how", ["event", "http"])
async def test_410_gone_relists_and_misses_nothing(k8s: Settings, cluster: Cluster,
                                                    how: str) -> None:
    sink = Recorder()
    async with stores(k8s) as (redis, s3), running_source(k8s, redis, s3, sink) as source:
        cluster.api.mute()  # the watch hears nothing while the Job runs...
        await launch(k8s, dispatch({"name": "quiet", "command": ["/bin/true"]}))
        async with asyncio.timeout(10):
            while not cluster.jobs() or not cluster.jobs()[0]["status"].get("succeeded"):
                await asyncio.sleep(0.05)
        cluster.api.knobs.muted = False
        cluster.api.expire(how)  # ...and then its resourceVersion is compacted away
        done = await sink.terminal("quiet")
        assert done.phase == "succeeded"
        assert all(w.lists >= 2 for w in source.watches)
