"""Task memoization end to end: reuse, invalidation with a reason, and opting out."""

from __future__ import annotations

import copy
from typing import Any

import aiohttp

from tests.stack import Stack, follow, metrics_when, submit, wait_run


def pipeline(command: str = "echo rules-v1 > /artifacts/rules.txt",
             cache_version: str | None = None) -> dict[str, Any]:
    expensive: dict[str, Any] = {
        "name": "generate-rules", "image": "python:3.11", "memoize": True,
        "command": ["/bin/sh", "-c", command], "outputs": ["rules.txt"],
    }
    if cache_version:
        expensive["cacheVersion"] = cache_version
    return {"apiVersion": "v1", "dagName": "ml-pipeline", "tasks": [
        expensive,
        {"name": "serve", "image": "python:3.11", "command": ["cat", "/artifacts/rules.txt"],
         "inputs": [{"fromTask": "generate-rules", "name": "rules.txt"}]},
    ]}


def task(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in status["tasks"] if t["name"] == name)


async def run(http: aiohttp.ClientSession, stack: Stack, doc: dict[str, Any], **params: str
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    body = await submit(http, stack.api_url, doc, **params)
    events = await follow(http, stack.api_url, body["dagId"])
    status = await wait_run(http, stack.api_url, body["dagId"])
    assert status["status"] == "SUCCEEDED", status
    return status, events


async def test_memoized_task_is_reused_then_invalidated(stack: Stack, http: aiohttp.ClientSession) -> None:
    first, _ = await run(http, stack, pipeline())
    gen = task(first, "generate-rules")
    assert not gen["memoized"] and gen["memoReason"] == "ran: no earlier successful attempt"

    second, events = await run(http, stack, pipeline())
    gen = task(second, "generate-rules")
    assert gen["memoized"] and gen["memoReason"] == f"reused run {first['dagId']} attempt 1"
    assert gen["attempts"] == 1 and gen["node"] is None  # it never ran
    done = [e for e in events if e.get("task") == "generate-rules" and e["state"] == "SUCCEEDED"]
    assert done and done[0]["memoized"] is True
    async with http.get(f"{stack.api_url}/api/v1/dags/{second['dagId']}/tasks/serve/logs") as r:
        assert "rules-v1" in (await r.json())["lines"]

    changed, _ = await run(http, stack, pipeline(command="echo rules-v2 > /artifacts/rules.txt"))
    gen = task(changed, "generate-rules")
    assert not gen["memoized"] and gen["memoReason"] == "ran: changed: command"

    bumped, _ = await run(http, stack, pipeline(command="echo rules-v2 > /artifacts/rules.txt",
                                                cache_version="2"))
    assert task(bumped, "generate-rules")["memoReason"] == "ran: changed: cacheVersion"

    metrics = await metrics_when(
        http, stack.api_url, "ml-pipeline",
        lambda body: len(body["runs"]) == 4 and all(r["endTime"] for r in body["runs"]))
    assert [r["memoizedTasks"] for r in metrics["runs"]] == [0, 0, 1, 0]  # newest first


async def test_no_cache_run_skips_memoization(stack: Stack, http: aiohttp.ClientSession) -> None:
    await run(http, stack, pipeline())
    status, _ = await run(http, stack, copy.deepcopy(pipeline()), useCache="false")
    assert not task(status, "generate-rules")["memoized"]


def consumer_pipeline(version: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "dagName": "memo-input", "tasks": [
        {"name": "dataset", "image": "x", "env": {"VERSION": version},
         "command": ["/bin/sh", "-c", 'echo "$VERSION" > /artifacts/data.txt'],
         "outputs": ["data.txt"]},
        {"name": "train", "image": "x", "memoize": True,
         "command": ["/bin/sh", "-c", "wc -c < /artifacts/data.txt > /artifacts/model.txt"],
         "inputs": [{"fromTask": "dataset", "name": "data.txt"}], "outputs": ["model.txt"]},
    ]}


async def test_changed_input_invalidates_memoization(stack: Stack, http: aiohttp.ClientSession) -> None:
    first, _ = await run(http, stack, consumer_pipeline("v1"))
    assert task(first, "train")["memoReason"] == "ran: no earlier successful attempt"
    same, _ = await run(http, stack, consumer_pipeline("v1"))  # same bytes, new run
    assert task(same, "train")["memoized"]
    changed, _ = await run(http, stack, consumer_pipeline("v2-longer"))
    train = task(changed, "train")
    assert not train["memoized"] and train["memoReason"] == "ran: changed: input data.txt"
