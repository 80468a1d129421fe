"""The watcher side against the stand-in: list+watch, reports, logs, Job clean-up."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from helios import keys, objects, tasklogs
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


async def test_410_gone_relists_and_misses_nothing(k8s: Settings, cluster: Cluster) -> None:
    # HTTP 410 here; the ERROR-event form in test_k8s_watch and the end-to-end test.
    sink = Recorder()
    async with stores(k8s) as (redis, s3), running_source(k8s, redis, s3, sink) as source:
        cluster.api.mute()  # the watch hears nothing while the Job runs...
        await launch(k8s, dispatch({"name": "quiet", "command": ["/bin/true"]}))
        await cluster.wait_for(lambda: bool(cluster.jobs())
                               and bool(cluster.jobs()[0]["status"].get("succeeded")))
        cluster.api.knobs.muted = False
        cluster.api.expire("http")  # ...and then its resourceVersion is compacted away
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
                                name="input.txt", from_task="gen", artifact="output.txt",
                                key=out.key, sha256=out.sha256, size=out.size)])

        # A retry (attempt 2) on the node whose cache the producer did not fill: a miss.
        await launch(k8s, use(2))
        used = await sink.terminal("use", 2)
        lines = await tasklogs.read_lines(redis, "run-1", "use")
    # (Hits, and a second node with a cold cache, are in the end-to-end test.)
    assert (used.phase, used.node) == ("succeeded", "node-a")
    assert (used.cache.misses, used.cache.hits, used.cache.bytes_fetched) == (1, 0, 10)
    assert lines[0] == tasklogs.ATTEMPT_BANNER.format(attempt=2)
    assert lines[1].startswith("[HELIOS] Cache miss input.txt (10 bytes")
    assert "test data" in lines
    cache = cluster.node_dir("node-a") / "var/helios/cache"
    assert cache.stat().st_uid == 10001  # the cache-owner step handed it to the downloader
    assert any(p.is_file() for p in cache.rglob("*"))


async def test_restart_reconciles_jobs_that_finished_meanwhile(k8s: Settings,
                                                               cluster: Cluster) -> None:
    d = dispatch({"name": "offline", "command": ["/bin/sh", "-c", "echo done while away"]})
    await launch(k8s, d)  # no watcher runs while the Job runs and finishes
    await cluster.wait_for(lambda: bool(cluster.jobs()[0]["status"].get("succeeded")))
    sink = Recorder()
    async with stores(k8s) as (redis, s3), running_source(k8s, redis, s3, sink):
        done = await sink.terminal("offline")
        assert sink.phases("offline") == ["running", "succeeded"]
        assert await tasklogs.read_lines(redis, "run-1", "offline") == ["done while away"]
        await cluster.wait_for(lambda: not cluster.jobs())
    assert done.phase == "succeeded"


async def test_a_restart_between_report_and_delete_reports_nothing_twice(
        k8s: Settings, cluster: Cluster) -> None:
    d = dispatch({"name": "once", "command": ["/bin/sh", "-c", "echo only once"]})
    first = Recorder()
    async with stores(k8s) as (redis, s3):
        # The first watcher reports and archives, but its Job delete keeps failing:
        # the restart finds a finished Job whose attempt was already settled.
        cluster.api.fail("DELETE", "/jobs/", 500, times=1000)
        async with running_source(k8s, redis, s3, first):
            await launch(k8s, d)
            await first.terminal("once")
        cluster.api.knobs.faults.clear()
        second = Recorder()
        async with running_source(k8s, redis, s3, second):
            await cluster.wait_for(lambda: not cluster.jobs())
        assert second.reports == []
        assert first.phases("once") == ["running", "succeeded"]
        assert await tasklogs.read_lines(redis, "run-1", "once") == ["only once"]


async def test_deadline_exceeded_fails_with_the_logs_so_far(k8s: Settings,
                                                             cluster: Cluster) -> None:
    sink = Recorder()
    d = dispatch({"name": "slow", "timeoutSeconds": 1, "outputs": ["never.txt"],
                  "command": ["/bin/sh", "-c", "echo started; exec sleep 30"]})
    async with stores(k8s) as (redis, s3), running_source(k8s, redis, s3, sink):
        await launch(k8s, d)
        done = await sink.terminal("slow")
        lines = await tasklogs.read_lines(redis, "run-1", "slow")
        await cluster.wait_for(lambda: not cluster.jobs() and not cluster.pods())
    assert (done.phase, done.reason) == ("failed", "DeadlineExceeded")
    assert done.message == "the command ran 1 s and was stopped (timeoutSeconds=1)"
    assert "started" in lines


def impatient(settings: Settings) -> Settings:
    return settings.model_copy(update={"k8s": settings.k8s.model_copy(
        update={"pending_timeout_s": 1.0})})


async def test_image_pull_failure_fails_after_the_pull_timeout(k8s: Settings,
                                                                cluster: Cluster) -> None:
    k8s = k8s.model_copy(update={"k8s": k8s.k8s.model_copy(
        update={"pending_timeout_s": 30.0, "image_pull_timeout_s": 1.0})})
    cluster.kubelet.bad_images.add("registry.example/missing:1")
    sink = Recorder()
    d = dispatch({"name": "pull", "image": "registry.example/missing:1",
                  "command": ["/bin/true"]})
    started = time.monotonic()
    async with stores(k8s) as (redis, s3), running_source(k8s, redis, s3, sink):
        await launch(k8s, d)
        done = await sink.terminal("pull")
        await cluster.wait_for(lambda: not cluster.jobs() and not cluster.pods())
    assert (done.phase, done.reason) == ("failed", "ImagePullFailed")
    # The kubelet's message: ErrImagePull's, or the back-off's that carries it (v1.32+).
    assert 'rpc error: code = NotFound desc = failed to pull and unpack image ' \
        '"registry.example/missing:1"' in (done.message or "")
    elapsed = time.monotonic() - started
    assert k8s.k8s.image_pull_timeout_s - 1.0 <= elapsed < k8s.k8s.pending_timeout_s
    assert sink.phases("pull") == ["failed"]  # it never ran


async def test_unschedulable_fails_after_the_pending_timeout(k8s: Settings,
                                                              cluster: Cluster) -> None:
    k8s = impatient(k8s)
    sink = Recorder()
    d = dispatch({"name": "nowhere", "command": ["/bin/true"],
                  "nodeSelector": {"kubernetes.io/hostname": "no-such-node"}})
    async with stores(k8s) as (redis, s3), running_source(k8s, redis, s3, sink):
        await launch(k8s, d)
        done = await sink.terminal("nowhere")
    assert (done.phase, done.reason) == ("failed", "Unschedulable")
    assert "didn't match Pod's node affinity/selector" in (done.message or "")


async def test_a_job_deleted_by_a_cancel_reports_cancelled(k8s: Settings,
                                                            cluster: Cluster) -> None:
    sink = Recorder()
    d = dispatch({"name": "long", "command": ["/bin/sh", "-c", "echo begun; exec sleep 30"]})
    async with stores(k8s) as (redis, s3), running_source(k8s, redis, s3, sink):
        await launch(k8s, d)
        await sink.wait_for(lambda r: r.phase == "running")
        await redis.hset(keys.run("run-1"), "state", "CANCELLED")
        async with kube_api(k8s) as api:
            await KubernetesExecutor(api, k8s).cancel_run("run-1")
        done = await sink.terminal("long")
        await cluster.wait_for(lambda: not cluster.pods())
    assert (done.phase, done.reason) == ("failed", "Cancelled")


async def test_a_job_relisted_before_its_pod_is_settled_with_the_pods_logs(
        k8s: Settings, cluster: Cluster) -> None:
    sink = Recorder()
    async with stores(k8s) as (redis, s3), running_source(k8s, redis, s3, sink):
        cluster.api.mute()  # the watches miss the whole attempt
        await launch(k8s, dispatch({"name": "race", "command": ["/bin/sh", "-c", "echo mine"]}))
        await cluster.wait_for(lambda: bool(cluster.jobs())
                               and bool(cluster.jobs()[0]["status"].get("succeeded")))
        cluster.api.knobs.muted = False
        # The pods' re-list keeps failing, so the Job is judged before its pod is cached.
        cluster.api.fail("GET", "/pods", 500, times=10_000, query_part="app%3Dhelios-task")
        cluster.api.expire("event")
        done = await sink.terminal("race")
        assert done.phase == "succeeded"
        assert await tasklogs.read_lines(redis, "run-1", "race") == ["mine"]
        cluster.api.knobs.faults.clear()
