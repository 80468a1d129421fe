"""Kubernetes watcher: a Job deleted by someone else is an attempt lost with its
executor (re-run by the scheduler); a chatty attempt's Redis log is capped."""

from __future__ import annotations

from helios import keys, objects, tasklogs
from helios.executors.kubernetes.executor import KubernetesExecutor
from helios.settings import Settings

from .helpers import Recorder, dispatch, kube_api, running_source
from .standin import Cluster
from .test_k8s_source import archived, launch, stores


async def test_a_job_deleted_by_someone_else_is_reported_lost(k8s: Settings,
                                                             cluster: Cluster) -> None:
    sink = Recorder()
    d = dispatch({"name": "long", "command": ["/bin/sh", "-c", "echo begun; exec sleep 30"]})
    async with stores(k8s) as (redis, s3), running_source(k8s, redis, s3, sink):
        await launch(k8s, d)
        await sink.wait_for(lambda r: r.phase == "running")
        async with kube_api(k8s) as api:  # the run was not cancelled: not Helios's delete
            await KubernetesExecutor(api, k8s).cancel_run("run-1")
        done = await sink.terminal("long")
        await cluster.wait_for(lambda: not cluster.pods())
    assert (done.phase, done.reason) == ("failed", "ExecutorLost")
    assert done.message == "the Job was deleted before it finished"


async def test_the_redis_log_is_capped_and_the_archive_keeps_everything(
        k8s: Settings, cluster: Cluster) -> None:
    capped = k8s.model_copy(update={"log_max_bytes": 4096})
    sink = Recorder()
    d = dispatch({"name": "loud", "command": ["/bin/sh", "-c", "seq -f 'line %06g' 1 1000"]})
    async with stores(capped) as (redis, s3), running_source(capped, redis, s3, sink):
        await launch(capped, d)
        done = await sink.terminal("loud")
        assert done.phase == "succeeded", done
        *kept, last = await tasklogs.read_lines(redis, "run-1", "loud")
        full = await archived(s3, capped, "run-1", "loud", 1)
        cuts = await tasklogs.read_cuts(redis, "run-1", "loud")
        assert await redis.exists(keys.task_log_cuts("run-1", "loud"))
    kept_bytes = sum(tasklogs.line_bytes(line) for line in kept)
    assert kept_bytes <= 4096 and kept == [f"line {i:06d}" for i in range(1, len(kept) + 1)]
    url = f"s3://{capped.s3.bucket}/{objects.log('run-1', 'loud', 1)}"
    assert last == f"[HELIOS] log truncated after {kept_bytes} bytes; full log: {url}"
    assert [(c.attempt, c.kept_bytes, c.url) for c in cuts] == [(1, kept_bytes, url)]
    assert full.splitlines() == [f"line {i:06d}" for i in range(1, 1001)]
