"""The watcher side against the stand-in: list+watch, reports, logs, Job clean-up."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helios import objects, tasklogs
from helios.executors.kubernetes.executor import KubernetesExecutor
from helios.messages import InputArtifact
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
        await cluster.wait_for(lambda: not cluster.jobs() and not cluster.pods(), 5)


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
        await cluster.wait_for(lambda: bool(cluster.jobs())
                               and bool(cluster.jobs()[0]["status"].get("succeeded")))
        cluster.api.knobs.muted = False
        cluster.api.expire(how)  # ...and then its resourceVersion is compacted away
        done = await sink.terminal("quiet")
        assert done.phase == "succeeded"
        assert all(w.lists >= 2 for w in source.watches)


async def test_outputs_then_inputs_through_the_node_cache(k8s: Settings, cluster: Cluster
                                                          ) -> None:
    sink = Recorder()
    gen = dispatch({"name": "gen", "outputs": ["output.txt"],
                    "command": ["/bin/bash", "-c", "echo 'test data' > /artifacts/output.txt"]})
    async with stores(k8s) as (redis, s3), running_source(k8s, redis, s3, sink):
        await launch(k8s, gen)
        made = await sink.terminal("gen")
        assert made.phase == "succeeded", made
        [out] = made.outputs
        assert (out.name, out.size) == ("output.txt", 10)
        assert out.key == objects.output("run-1", "gen", "output.txt")

        def use(attempt: int) -> Any:
            return dispatch({"name": "use", "command": ["/bin/bash", "-c",
                                                        "cat /artifacts/input.txt"]},
                            attempt=attempt, inputs=[InputArtifact(
                                name="input.txt", fromTask="gen", artifact="output.txt",
                                key=out.key, sha256=out.sha256, size=out.size)])

        await launch(k8s, use(1))
        first = await sink.terminal("use", 1)
        await launch(k8s, use(2))
        second = await sink.terminal("use", 2)
        cluster.kubelet.nodes["node-a"].cordoned = True
        await launch(k8s, use(3))
        third = await sink.terminal("use", 3)
        lines = await tasklogs.read_lines(redis, "run-1", "use")
    assert [r.phase for r in (first, second, third)] == ["succeeded"] * 3
    assert (first.node, second.node, third.node) == ("node-a", "node-a", "node-b")
    assert (first.cache.misses, first.cache.hits) == (1, 0)
    assert (second.cache.misses, second.cache.hits) == (0, 1)
    assert (third.cache.misses, third.cache.hits) == (1, 0)
    assert "test data" in lines
    assert any(ln.startswith("[HELIOS] Cache miss input.txt") for ln in lines)
    assert any(ln.startswith("[HELIOS] Cache hit input.txt") for ln in lines)
    assert tasklogs.ATTEMPT_BANNER.format(attempt=2) in lines
    cache_a = cluster.node_dir("node-a") / "var/helios/cache"
    assert any(p.is_file() for p in cache_a.rglob("*"))
