"""Bad input gets a precise problem+json and never a 500; nothing is stored for it."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.stack import Stack

PROBLEM = "application/problem+json"


async def post(http: aiohttp.ClientSession, stack: Stack, body: bytes, ctype: str) -> tuple[int, Any, str]:
    async with http.post(f"{stack.api_url}/api/v1/dags", data=body,
                         headers={"Content-Type": ctype}) as resp:
        return resp.status, await resp.json(content_type=None), resp.content_type


def dag(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": "v1", "dagName": "errors", "tasks": [
        {"name": "a", "image": "i", "command": ["true"]}]}
    doc.update(changes)
    return doc


@pytest.mark.parametrize(("body", "field", "reason"), [
    (dag(colour=1), "colour", "unknown key"),
    (dag(dagName="UPPER"), "dagName", "DNS-1123"),
    (dag(tasks=[{"name": "a", "image": "i", "command": []}]), "tasks[0].command", "must not be empty"),
    (dag(tasks=[{"name": "a", "image": "i", "command": ["x"], "outputs": ["../etc"]}]),
     "tasks[0].outputs[0]", "'/'"),
    (dag(tasks=[{"name": "a", "image": "i", "command": ["x"], "depends_on": ["b"]},
                {"name": "b", "image": "i", "command": ["x"], "depends_on": ["a"]}]),
     "tasks", "dependency cycle: a -> b -> a"),
    (dag(tasks=[{"name": "a", "image": "i", "command": ["x"]},
                {"name": "a", "image": "i", "command": ["x"]}]), "tasks[1].name", "duplicate"),
    # Names are full matches; nothing hidden in file or env names; no empty command item.
    (dag(tasks=[{"name": "a", "image": "i", "command": ["x"], "env": {"FOO\n": "1"}}]),
     "tasks[0].env", "not a valid variable name"),
    (dag(tasks=[{"name": "a", "image": "i", "command": ["x"],
                 "outputs": ["o\n[HELIOS] Cache hit: x"]}]), "tasks[0].outputs[0]", "U+000A"),
    (dag(tasks=[{"name": "a", "image": "i", "command": ["x"], "outputs": ["a\u202etxt.exe"]}]),
     "tasks[0].outputs[0]", "U+202E"),
    (dag(tasks=[{"name": "a", "image": "i", "command": [""]}]), "tasks[0].command[0]",
     "must not be empty"),
    (dag(dagName="errors\n"), "dagName", "DNS-1123"),
])
async def test_invalid_dags_are_400_with_field_and_reason(
    stack: Stack, http: aiohttp.ClientSession, body: dict[str, Any], field: str, reason: str
) -> None:
    status, problem, ctype = await post(http, stack, json.dumps(body).encode(), "application/json")
    assert status == 400 and ctype == PROBLEM
    assert problem["status"] == 400 and problem["title"] == "invalid DAG"
    matching = [e for e in problem["errors"] if e["field"] == field]
    assert matching and reason in matching[0]["reason"], problem


async def test_nothing_is_stored_for_a_rejected_submission(stack: Stack, http: aiohttp.ClientSession) -> None:
    await post(http, stack, json.dumps(dag(dagName="BAD")).encode(), "application/json")
    r = aioredis.Redis.from_url(stack.settings.redis.url)
    try:
        assert [k async for k in r.scan_iter("dag:*")] == []
    finally:
        await r.aclose()


@pytest.mark.parametrize(("body", "ctype", "status", "title"), [
    (b"{", "application/json", 400, "malformed JSON"),
    (b"tasks: [", "application/yaml", 400, "malformed YAML"),
    (b"x" * (1024 * 1024 + 10), "application/json", 400, "document too large"),
    (b"hello", "text/plain", 415, "Unsupported Media Type"),
    (b"\xff\xfe\x00", "application/json", 400, "malformed JSON"),
    (b"[]", "application/json", 400, "invalid DAG"),
    (b"!!python/object:os.system ['true']", "application/yaml", 400, "malformed YAML"),
])
async def test_malformed_bodies(stack: Stack, http: aiohttp.ClientSession, body: bytes, ctype: str,
                                status: int, title: str) -> None:
    got, problem, media = await post(http, stack, body, ctype)
    assert (got, media) == (status, PROBLEM), problem
    assert problem["title"] == title


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/api/v1/dags/nope", 404),
    ("GET", "/api/v1/dags/" + "0" * 32, 404),
    ("GET", "/api/v1/dags/" + "0" * 32 + "/events", 404),
    ("GET", "/api/v1/dags/" + "0" * 32 + "/tasks/a/logs", 404),
    ("POST", "/api/v1/dags/" + "0" * 32 + "/cancel", 404),
    ("POST", "/api/v1/dags/" + "0" * 32 + "/retry", 404),
    ("GET", "/api/v1/nowhere", 404),
    ("DELETE", "/api/v1/dags", 405),
    ("GET", "/api/v1/dags/cache-test/metrics?limit=0", 400),
    ("GET", "/api/v1/dags/cache-test/metrics?limit=abc", 400),
    ("GET", "/api/v1/dags/cache-test/metrics?limit=101", 400),
])
async def test_unknown_and_bad_paths(stack: Stack, http: aiohttp.ClientSession, method: str, path: str,
                                     status: int) -> None:
    async with http.request(method, stack.api_url + path) as resp:
        assert resp.status == status
        assert resp.content_type == PROBLEM


async def test_bad_query_values_on_a_real_run(stack: Stack, http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, stack, json.dumps(dag()).encode(), "application/json")
    assert status == 201
    base = f"{stack.api_url}/api/v1/dags/{body['dagId']}"
    for url, headers in ((f"{base}/tasks/a/logs?offset=-1", {}), (f"{base}/tasks/a/logs?limit=x", {}),
                         (f"{base}/events", {"Last-Event-ID": "abc"}),
                         (f"{stack.api_url}/api/v1/dags?useCache=maybe", {})):
        method = "POST" if url.endswith("maybe") else "GET"
        async with http.request(method, url, headers=headers, json=dag()) as resp:
            assert resp.status == 400, url
            assert resp.content_type == PROBLEM
    async with http.get(f"{base}/tasks/zz/logs") as resp:
        assert resp.status == 404


async def test_openapi_document_lists_every_route(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{stack.api_url}/api/v1/openapi.json") as resp:
        doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/dags", "/dags/{dagId}", "/dags/{dagId}/events", "/dags/{dagId}/tasks/{task}/logs",
        "/dags/{dagId}/cancel", "/dags/{dagId}/retry", "/dags/{dagName}/metrics", "/system/status",
        "/dag-names", "/dags/{dagId}/resubmit", "/templates", "/templates/{name}",
        "/templates/{name}/runs",
        "/schedules", "/templates/{name}/schedule", "/templates/{name}/schedule/pause",
        "/templates/{name}/schedule/resume", "/templates/{name}/backfills", "/backfills",
        "/backfills/{id}", "/backfills/{id}/cancel", "/templates/{name}/trigger", "/triggers",
        "/triggers/{trigger}",
    }
    assert "Dag" in doc["components"]["schemas"]


async def test_system_status_and_probes(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{stack.api_url}/readyz") as resp:
        assert resp.status == 200
    async with http.get(f"{stack.api_url}/api/v1/system/status") as resp:
        body = await resp.json()
    assert {s["name"]: s["ok"] for s in body["stores"]} == {"nats": True, "redis": True, "s3": True}
    names = {s["name"]: s["ok"] for s in body["services"]}
    assert set(names) == {"api", "scheduler", "watcher", "metrics"}
    assert names["api"] and names["scheduler"] and names["watcher"]


async def test_prometheus_metrics_are_served(stack: Stack, http: aiohttp.ClientSession) -> None:
    doc = json.dumps(dag()).encode()
    status, body, _ = await post(http, stack, doc, "application/json")
    assert status == 201
    from tests.stack import wait_run

    await wait_run(http, stack.api_url, body["dagId"])
    async with http.get(f"{stack.api_url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    # One registry per process; the in-process stack shows every service's series.
    for series in ("helios_scheduler_launches_total", "helios_dispatch_latency_seconds_bucket",
                   "helios_watcher_reports_total", "helios_local_attempts_running",
                   "helios_scheduler_queued_messages"):
        assert series in text, series

