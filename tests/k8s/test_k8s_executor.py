"""The scheduler side against the stand-in: create (409 = already dispatched), retries,
cancel with the pods, the global and per-run caps, the client-side rate limit."""

from __future__ import annotations

import asyncio
import time

import pytest

from helios.executors.kubernetes.client import KubeError, TokenBucket
from helios.executors.kubernetes.executor import CapacityExceeded, KubernetesExecutor
from helios.executors.kubernetes.jobs import build_job
from helios.settings import Settings

from .conftest import kube_settings
from .helpers import dispatch, kube_api
from .standin import Cluster

SLEEP = {"name": "nap", "command": ["/bin/sleep", "30"]}


@pytest.fixture
def cfg(cluster: Cluster) -> Settings:
    return kube_settings(Settings(), cluster, api_qps=200.0)


async def test_launch_creates_the_job_and_a_redelivery_is_a_no_op(cluster: Cluster,
                                                                   cfg: Settings) -> None:
    d = dispatch({"name": "hello", "command": ["/bin/true"]})
    async with kube_api(cfg) as api:
        executor = KubernetesExecutor(api, cfg)
        await executor.launch(d)
        await executor.launch(d)  # the same message delivered again
    [job] = cluster.jobs()
    assert job["metadata"]["name"] == d.job_name
    assert job["spec"]["template"]["spec"] == {
        **build_job(d, cfg)["spec"]["template"]["spec"], **job["spec"]["template"]["spec"]}
    assert cluster.api.count("POST", "/jobs") == 2  # the second answered 409


async def test_transient_errors_are_retried_and_others_raised(cluster: Cluster,
                                                              cfg: Settings) -> None:
    async with kube_api(cfg) as api:
        executor = KubernetesExecutor(api, cfg)
        executor.retry_s = (0.01, 0.01, 0.01)
        cluster.api.fail("POST", "/jobs", 503, times=2)
        await executor.launch(dispatch({"name": "a", "command": ["/bin/true"]}))
        assert len(cluster.jobs()) == 1
        cluster.api.fail("POST", "/jobs", 403)
        with pytest.raises(KubeError) as err:
            await executor.launch(dispatch({"name": "b", "command": ["/bin/true"]}))
        assert err.value.code == 403
        assert executor.slots.active.keys() == {cluster.jobs()[0]["metadata"]["name"]}


async def test_cancel_deletes_the_runs_jobs_and_their_pods(cluster: Cluster,
                                                            cfg: Settings) -> None:
    async with kube_api(cfg) as api:
        executor = KubernetesExecutor(api, cfg)
        for dag_id, name in (("run-a", "one"), ("run-a", "two"), ("run-b", "other")):
            await executor.launch(dispatch({**SLEEP, "name": name}, dag_id=dag_id))
        await cluster.wait_for(lambda: sum(
            1 for p in cluster.pods()
            if "running" in p["status"].get("containerStatuses", [{}])[0].get("state", {})
        ) == 3)
        await executor.cancel_run("run-a")
        # A launch that comes after the cancel (a stale message) must not start anything.
        await executor.launch(dispatch({**SLEEP, "name": "late"}, dag_id="run-a"))
    assert [j["metadata"]["labels"]["helios.dev/run-id"] for j in cluster.jobs()] == ["run-b"]
    await cluster.wait_for(lambda: len(cluster.pods()) == 1)
    query = next(q for m, _, q in cluster.api.requests if m == "DELETE")
    assert query["propagationPolicy"] == "Background"


async def test_global_cap_waits_for_a_free_slot(cluster: Cluster) -> None:
    cfg = kube_settings(Settings(), cluster, max_parallel_jobs=2, api_qps=200.0)
    async with kube_api(cfg) as api:
        executor = KubernetesExecutor(api, cfg, slot_wait_s=0.3)
        executor.slots.refresh_s = 0.05
        await executor.launch(dispatch({**SLEEP, "name": "a"}))
        await executor.launch(dispatch({**SLEEP, "name": "b"}, dag_id="run-2"))
        with pytest.raises(CapacityExceeded):
            await executor.launch(dispatch({**SLEEP, "name": "c"}, dag_id="run-3"))
        executor.slot_wait_s = 10.0
        lists = cluster.api.count("GET", "/jobs", watch=False)
        third = asyncio.create_task(executor.launch(dispatch({**SLEEP, "name": "c"},
                                                             dag_id="run-3")))
        # A second look at the cluster means the first found no free slot: it waits.
        await cluster.api.until_count("GET", "/jobs", lists + 2, watch=False)
        assert not third.done()
        await executor.cancel_run("run-2")  # a slot frees up (here: by a cancel)
        async with asyncio.timeout(5):
            await third
    assert sorted(j["metadata"]["labels"]["helios.dev/task"] for j in cluster.jobs()) == [
        "a", "c"]


async def test_per_run_cap(cluster: Cluster) -> None:
    cfg = kube_settings(Settings(), cluster, max_parallel_jobs_per_run=1, api_qps=200.0)
    async with kube_api(cfg) as api:
        executor = KubernetesExecutor(api, cfg, slot_wait_s=0.2)
        executor.slots.refresh_s = 0.05
        await executor.launch(dispatch({**SLEEP, "name": "a"}, dag_id="run-1"))
        with pytest.raises(CapacityExceeded):
            await executor.launch(dispatch({**SLEEP, "name": "b"}, dag_id="run-1"))
        await executor.launch(dispatch({**SLEEP, "name": "b"}, dag_id="run-2"))
    assert len(cluster.jobs()) == 2


async def test_api_calls_are_rate_limited(cluster: Cluster) -> None:
    cfg = kube_settings(Settings(), cluster, api_qps=50.0)
    async with kube_api(cfg) as api:
        start = time.monotonic()
        await asyncio.gather(*(api.get_job(f"missing-{i}") for i in range(75)))
        elapsed = time.monotonic() - start
    # A burst of 50, then 50 a second: 25 more calls take at least half a second.
    assert elapsed >= 0.45
    assert cluster.api.count("GET", "/jobs/missing-") == 75


async def test_token_bucket_spaces_calls() -> None:
    bucket = TokenBucket(rate=100.0, burst=1)
    start = time.monotonic()
    for _ in range(11):
        await bucket.take()
    assert time.monotonic() - start >= 0.09
