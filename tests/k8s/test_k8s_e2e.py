"""The whole stack with HELIOS_EXECUTOR=kubernetes against the stand-in cluster: the API,
the SSE feed, the logs and the metrics behave as with the local executor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources

import aiohttp
import pytest

from helios.settings import Settings
from tests.stack import (
    Stack,
    by_name,
    doc,
    follow,
    metrics_when,
    running_stack,
    sh,
    submit,
    task_logs,
    wait_run,
)

from .standin import Cluster

SEED = resources.files("helios").joinpath("examples/cache-test.yaml").read_text()


@pytest.fixture
async def stack(k8s: Settings) -> AsyncIterator[Stack]:
    async with running_stack(k8s) as running:
        yield running


async def run_seed(stack: Stack, http: aiohttp.ClientSession) -> tuple[str, list[str]]:
    run = await submit(http, stack.api_url, SEED)
    status = await wait_run(http, stack.api_url, run["dagId"])
    assert status["status"] == "SUCCEEDED", status
    return run["dagId"], await task_logs(http, stack.api_url, run["dagId"], "process-data")


async def test_seed_miss_then_hit_on_one_node_then_miss_on_another(
        stack: Stack, http: aiohttp.ClientSession, cluster: Cluster) -> None:
    first, first_logs = await run_seed(stack, http)
    assert "test data" in first_logs
    assert any(ln.startswith("[HELIOS] Cache miss input.txt") for ln in first_logs)
    second, second_logs = await run_seed(stack, http)
    assert any(ln.startswith("[HELIOS] Cache hit input.txt") for ln in second_logs)
    assert "test data" in second_logs
    cluster.kubelet.nodes["node-a"].cordoned = True  # the next run lands on node-b
    third, third_logs = await run_seed(stack, http)
    assert any(ln.startswith("[HELIOS] Cache miss input.txt") for ln in third_logs)

    metrics = await metrics_when(http, stack.api_url, "cache-test", lambda body: len(
        body["runs"]) == 3 and all(r["endTime"] for r in body["runs"]))
    runs = metrics["runs"]
    assert [r["dagId"] for r in runs] == [third, second, first]
    assert [r["cacheHit"] for r in runs] == ["Miss", "Hit", "Miss"]
    assert [r["nodes"] for r in runs] == [["node-b"], ["node-a"], ["node-a"]]
    status = await wait_run(http, stack.api_url, third)
    process = by_name(status)["process-data"]
    assert process["node"] == "node-b"
    assert not cluster.jobs()  # every finished Job was deleted once its logs were safe


async def test_failures_timeouts_and_missing_outputs(stack: Stack, http: aiohttp.ClientSession
                                                     ) -> None:
    dag = doc("failing",
              sh("bad", "echo boom >&2; exit 3"),
              sh("child", "true", depends_on=["bad"]),
              sh("slow", "echo started; exec sleep 30", timeoutSeconds=1),
              sh("liar", "true", outputs=["promised.txt"]))
    run = await submit(http, stack.api_url, dag)
    status = await wait_run(http, stack.api_url, run["dagId"], timeout_s=30)
    tasks = by_name(status)
    assert status["status"] == "FAILED"
    assert (tasks["bad"]["state"], tasks["bad"]["exitCode"]) == ("FAILED", 3)
    assert tasks["child"]["state"] == "UPSTREAM_FAILED"
    assert "boom" in await task_logs(http, stack.api_url, run["dagId"], "bad")
    assert tasks["slow"]["reason"] == "DeadlineExceeded"
    assert "timeoutSeconds=1" in tasks["slow"]["message"]
    assert "started" in await task_logs(http, stack.api_url, run["dagId"], "slow")
    assert (tasks["liar"]["reason"], tasks["liar"]["exitCode"]) == ("MissingOutputs", 0)
    assert "promised.txt" in tasks["liar"]["message"]


async def test_watcher_restarted_mid_run(stack: Stack, http: aiohttp.ClientSession,
                                         cluster: Cluster) -> None:
    dag = doc("watcher-restart",
              sh("first", "echo one; echo 1 > /artifacts/x", outputs=["x"]),
              sh("second", "cat /artifacts/x", inputs=[{"fromTask": "first", "name": "x"}]))
    run = await submit(http, stack.api_url, dag)
    await follow(http, stack.api_url, run["dagId"],
                 until=lambda e: e.get("task") == "first" and e["state"] == "RUNNING")
    await stack.stop("watcher")
    # While no watcher runs, `first` finishes; its Job waits, with its logs, for the next.
    await cluster.wait_for(lambda: any(j["status"].get("succeeded") for j in cluster.jobs()))
    await stack.start("watcher")
    status = await wait_run(http, stack.api_url, run["dagId"], timeout_s=30)
    assert status["status"] == "SUCCEEDED", status
    assert all(t["attempts"] == 1 for t in status["tasks"])
    assert (await task_logs(http, stack.api_url, run["dagId"], "first")).count("one") == 1
    assert "1" in await task_logs(http, stack.api_url, run["dagId"], "second")


async def test_watch_gets_410_gone_mid_run(stack: Stack, http: aiohttp.ClientSession,
                                           cluster: Cluster) -> None:
    # As an ERROR event in the stream (the usual form); HTTP 410 in the other suites.
    dag = doc("gone", sh("quick", "echo quick"), sh("after", "echo after", depends_on=["quick"]))
    cluster.api.mute()  # the watcher's streams go dead: it hears nothing of `quick`
    run = await submit(http, stack.api_url, dag)
    await cluster.wait_for(lambda: any(j["status"].get("succeeded") for j in cluster.jobs()))
    cluster.api.knobs.muted = False
    cluster.api.expire("event")  # its resume finds the resourceVersion compacted: 410
    status = await wait_run(http, stack.api_url, run["dagId"], timeout_s=30)
    assert status["status"] == "SUCCEEDED", status
    assert "quick" in await task_logs(http, stack.api_url, run["dagId"], "quick")
    relists = [q for m, p, q in cluster.api.requests
               if m == "GET" and p.endswith("/jobs") and "watch" not in q]
    assert len(relists) >= 2
