"""The four services in this test's event loop, talking over the session's real servers.

Each service runs its production `serve()` with its own StopEvent, so a test can stop
and restart one (a scheduler or watcher restarted mid-run) exactly as SIGTERM would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import redis.asyncio as aioredis

from helios import keys
from helios.devstack.procs import free_port
from helios.health import Health
from helios.runtime import StopEvent
from helios.settings import HttpSettings, Settings
from services.api.service import serve as serve_api
from services.metrics.service import serve as serve_metrics
from services.scheduler.service import serve as serve_scheduler
from services.watcher.service import serve as serve_watcher

Serve = Callable[[Settings, StopEvent, Health], Coroutine[Any, Any, None]]


@dataclass
class Running:
    task: asyncio.Task[None]
    stop: StopEvent
    health: Health


@dataclass
class Stack:
    settings: Settings
    api_url: str
    metrics_url: str
    services: dict[str, Running] = field(default_factory=dict)
    serves: dict[str, tuple[Serve, Settings]] = field(default_factory=dict)

    async def start(self, name: str) -> None:
        serve, settings = self.serves[name]
        stop, health = StopEvent(), Health(name)
        task = asyncio.create_task(serve(settings, stop, health), name=f"service:{name}")
        self.services[name] = Running(task, stop, health)
        ready = asyncio.create_task(health.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=90, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            task.result()  # raises what made it fail
            raise RuntimeError(f"{name} exited during startup")
        if ready not in done:
            raise TimeoutError(f"{name} not ready after 90s")

    async def stop(self, name: str, timeout_s: float = 30.0) -> None:
        running = self.services.pop(name)
        running.stop.set()
        await asyncio.wait_for(running.task, timeout_s)
        assert running.stop.failure is None, running.stop.failure

    async def restart(self, name: str) -> None:
        await self.stop(name)
        await self.start(name)


def _with_port(settings: Settings, port: int, **changes: Any) -> Settings:
    return settings.model_copy(update={"http": HttpSettings(host="127.0.0.1", port=port), **changes})


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings, only: tuple[str, ...] = ("metrics", "scheduler", "watcher", "api"),
) -> AsyncIterator[Stack]:
    """The services named in `only` (all four by default) in this loop."""
    api_port, metrics_port = free_port(), free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    stack = Stack(settings, f"http://127.0.0.1:{api_port}", metrics_url)
    stack.serves = {
        "metrics": (serve_metrics, _with_port(settings, metrics_port)),
        "scheduler": (serve_scheduler, _with_port(settings, 0)),
        "watcher": (serve_watcher, _with_port(settings, 0)),
        "api": (serve_api, _with_port(settings, api_port, metrics_url=metrics_url)),
    }
    stack.serves = {name: serve for name, serve in stack.serves.items() if name in only}
    try:
        # The API proxies to the metrics service; the others only need the servers.
        await asyncio.gather(*(stack.start(n) for n in stack.serves if n != "api"))
        if "api" in stack.serves:
            await stack.start("api")
        yield stack
    finally:
        for name in reversed(list(stack.services)):
            with contextlib.suppress(Exception):
                await stack.stop(name)


async def submit(session: aiohttp.ClientSession, api: str, dag: dict[str, Any] | str,
                 **params: str) -> dict[str, Any]:
    if isinstance(dag, str):
        kwargs: dict[str, Any] = {"data": dag, "headers": {"Content-Type": "application/yaml"}}
    else:
        kwargs = {"json": dag}
    async with session.post(f"{api}/api/v1/dags", params=params, **kwargs) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == 201, body
        return body


async def follow(session: aiohttp.ClientSession, api: str, dag_id: str,
                 last_event_id: int | None = None, timeout_s: float = 60.0,
                 until: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
    """Read the SSE feed until it ends (or `until(event)` is true); events with `id`."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s), session.get(
        f"{api}/api/v1/dags/{dag_id}/events", headers=headers
    ) as resp:
        assert resp.status == 200
        current: dict[str, str] = {}
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if not line:
                if "data" in current:
                    event = json.loads(current["data"])
                    event["_id"] = int(current["id"])
                    events.append(event)
                    if until and until(event):
                        break
                current = {}
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            current[key] = value.lstrip(" ")
    return events


async def wait_run(session: aiohttp.ClientSession, api: str, dag_id: str,
                   timeout_s: float = 60.0) -> dict[str, Any]:
    """Follow the feed to its end, then return the run's status."""
    await follow(session, api, dag_id, timeout_s=timeout_s)
    async with session.get(f"{api}/api/v1/dags/{dag_id}") as resp:
        return await resp.json()


async def metrics_when(session: aiohttp.ClientSession, api: str, dag_name: str,
                       ready: Callable[[dict[str, Any]], bool], timeout_s: float = 20.0,
                       limit: int = 10) -> dict[str, Any]:
    """Poll the metrics endpoint until `ready(body)`: metrics are written just after the
    events that feed them, so a client that has just seen a run end may be early."""
    async with asyncio.timeout(timeout_s):
        while True:
            async with session.get(f"{api}/api/v1/dags/{dag_name}/metrics",
                                   params={"limit": str(limit)}) as resp:
                body = await resp.json()
                if resp.status == 200 and ready(body):
                    return body
            await asyncio.sleep(0.05)


def sh(name: str, script: str, **extra: Any) -> dict[str, Any]:
    """A task running a fixed shell script (the script is the test's, never user input)."""
    return {"name": name, "image": "debian:12", "command": ["/bin/sh", "-c", script], **extra}


def doc(name: str, *tasks: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "dagName": name, "tasks": list(tasks)}


def by_name(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in status["tasks"]}


async def task_logs(session: aiohttp.ClientSession, api: str, dag_id: str, task: str) -> list[str]:
    async with session.get(f"{api}/api/v1/dags/{dag_id}/tasks/{task}/logs") as resp:
        return list((await resp.json())["lines"])


T = TypeVar("T")
POLL_DEADLINE_S = 90.0  # CI may run at load 5 and more


async def call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
               ) -> tuple[int, Any]:
    """(status, JSON body or None) of one request."""
    async with http.request(method, url, **kwargs) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


async def until(check: Callable[[], Awaitable[T | None]], what: str,
                deadline_s: float = POLL_DEADLINE_S) -> T:
    """Poll `check` until it returns something truthy (generous deadline)."""
    try:
        async with asyncio.timeout(deadline_s):
            while True:
                found = await check()
                if found:
                    return found
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not after {deadline_s}s: {what}") from None


async def runs_named(redis: aioredis.Redis, name: str) -> list[str]:
    """The runs of one DAG name, oldest first (the scheduler's runs index)."""
    return [str(r) for r in await redis.zrange(keys.runs_by_name(name), 0, -1)]
