"""The seed example end to end on the local executor, twice: miss, then hit, and the
metrics endpoint (through the API's base URL, as the seed's guide uses it) shows both."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import aiohttp

from tests.stack import Stack, metrics_when, submit, wait_run

SEED = resources.files("helios").joinpath("examples/cache-test.yaml").read_text()


async def task_logs(http: aiohttp.ClientSession, api: str, dag_id: str, task: str) -> list[str]:
    async with http.get(f"{api}/api/v1/dags/{dag_id}/tasks/{task}/logs") as r:
        return (await r.json())["lines"]


async def test_seed_twice_miss_then_hit(stack: Stack, http: aiohttp.ClientSession) -> None:
    api = stack.api_url
    first = await submit(http, api, SEED)
    status = await wait_run(http, api, first["dagId"])
    assert status["status"] == "SUCCEEDED", status
    logs = await task_logs(http, api, first["dagId"], "process-data")
    assert "test data" in logs
    assert any(line.startswith("[HELIOS] Cache miss input.txt") for line in logs), logs

    second = await submit(http, api, SEED)
    status = await wait_run(http, api, second["dagId"])
    assert status["status"] == "SUCCEEDED", status
    logs = await task_logs(http, api, second["dagId"], "process-data")
    assert any(line.startswith("[HELIOS] Cache hit input.txt") for line in logs), logs
    assert "test data" in logs

    metrics = await metrics_when(
        http, api, "cache-test",
        lambda body: len(body["runs"]) == 2 and all(r["endTime"] for r in body["runs"]))
    runs = metrics["runs"]
    assert [r["dagId"] for r in runs] == [second["dagId"], first["dagId"]]  # newest first
    assert [r["cacheHit"] for r in runs] == ["Hit", "Miss"]
    assert all(r["status"] == "SUCCEEDED" and int(r["taskCount"]) == 2 for r in runs)
    assert metrics["summary"]["cached"]["count"] == 2
    assert metrics["summary"]["lastRun"]["load"] == "2/2"
    # The sandbox mapped /artifacts without creating it on the host.
    assert not Path("/artifacts").exists()


async def test_no_cache_run_bypasses_the_cache(stack: Stack, http: aiohttp.ClientSession) -> None:
    api = stack.api_url
    await wait_run(http, api, (await submit(http, api, SEED))["dagId"])
    run = await submit(http, api, SEED, useCache="false")
    assert run["useCache"] is False
    await wait_run(http, api, run["dagId"])
    logs = await task_logs(http, api, run["dagId"], "process-data")
    assert not any("Cache hit" in line or "Cache miss" in line for line in logs), logs
    metrics = await metrics_when(
        http, api, "cache-test",
        lambda body: body["runs"][0]["dagId"] == run["dagId"] and body["runs"][0]["endTime"])
    assert metrics["runs"][0]["cacheHit"] == "N/A"
