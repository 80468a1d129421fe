"""`GET /api/v1/system/status` and the metrics proxy."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from helios.dag.model import is_dns_label
from helios.devstack.status import ProcessStatus, read_processes
from helios.health import read_heartbeats
from services.api.context import ctx
from services.api.problems import Problem

log = logging.getLogger(__name__)

SERVICES = ("api", "scheduler", "watcher", "metrics")
# Store name in this document -> the `helios dev` child that serves it.
STORE_PROCESS = {"nats": "nats", "redis": "valkey", "s3": "s3"}


async def _probe(name: str, check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), 2.0)
    except Exception as exc:
        # The exception's text names hosts and ports: it goes to the log, not to clients.
        log.warning("%s check failed: %r", name, exc)
        return {"name": name, "ok": False, "error": f"{name} unavailable ({type(exc).__name__})"}
    return {"name": name, "ok": True, "latencyMs": round((time.perf_counter() - started) * 1000, 2)}


def _public(beat: dict[str, Any]) -> dict[str, Any]:
    """A heartbeat as clients see it: a failed check says which, never the error's text."""
    checks = beat.get("checks") or {}
    return {**beat, "checks": {k: v if not str(v).startswith("error") else "unavailable"
                               for k, v in checks.items()}}


async def system_status(request: web.Request) -> web.Response:
    c = ctx(request)

    async def nats_check() -> None:
        await c.js.account_info()

    async def s3_check() -> None:
        await c.s3.head_bucket(Bucket=c.settings.s3.bucket)

    stores = await asyncio.gather(
        _probe("nats", nats_check), _probe("redis", c.redis.ping), _probe("s3", s3_check)
    )
    try:
        beats = await read_heartbeats(c.redis)
    except Exception:
        beats = []
    try:
        processes = {p.name: p for p in await asyncio.wait_for(read_processes(c.redis), 2.0)}
    except Exception:
        processes = {}
    services = []
    for name in SERVICES:
        instances = [_public(b) for b in beats if b["service"] == name and not b["stale"]]
        services.append({
            "name": name,
            "ok": any(b["ready"] for b in instances),
            "instances": instances,
            **_restarts(processes.get(name)),
        })
    for store in stores:
        store.update(_restarts(processes.get(STORE_PROCESS[store["name"]])))
    ok = (all(s["ok"] for s in stores) and all(s["ok"] for s in services)
          and all(p.state == "running" for p in processes.values()))
    body: dict[str, Any] = {"status": "ok" if ok else "degraded", "executor": c.settings.executor,
                            "stores": stores, "services": services}
    if processes:
        # Under `helios dev`: its supervisor's view of every child (in a cluster, Kubernetes').
        body["processes"] = [p.model_dump() for p in processes.values()]
    return web.json_response(body)


def _restarts(process: ProcessStatus | None) -> dict[str, Any]:
    return {} if process is None else {"restarts": process.restarts, "process": process.state}


async def dag_metrics(request: web.Request) -> web.StreamResponse:
    """Served by the metrics service; proxied so one base URL serves the whole API."""
    c = ctx(request)
    name = request.match_info["dag_name"]
    if not is_dns_label(name):
        raise Problem(400, "Bad Request", "dagName must be a DNS-1123 label")
    url = URL(c.settings.metrics_url).with_path(f"/api/v1/dags/{name}/metrics").with_query(
        request.query)
    try:
        async with c.http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as upstream:
            body = await upstream.read()
            return web.Response(status=upstream.status, body=body,
                                content_type=upstream.content_type)
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.warning("metrics proxy failed: %r", exc)
        raise Problem(503, "Service Unavailable", "metrics service unavailable; retry") from None
