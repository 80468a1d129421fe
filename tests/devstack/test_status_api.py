"""`GET /api/v1/system/status` shows the supervisor's view (restart counts, states) read
through its typed reader, and says "degraded" while a supervised child is down."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from helios import keys
from helios.devstack.status import ProcessStatus, read_processes
from helios.settings import Settings
from tests.devstack.devproc import eventually
from tests.stack import Stack, running_stack


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    async with running_stack(settings) as running:
        yield running


def record(name: str, kind: str, state: str, restarts: int) -> str:
    return ProcessStatus(name=name, kind=kind, state=state, pid=4242, restarts=restarts,
                         lastExitCode=-9 if restarts else None, startedAt=1.0).model_dump_json()


async def status(http: aiohttp.ClientSession, stack: Stack) -> dict[str, object]:
    async with http.get(f"{stack.api_url}/api/v1/system/status") as resp:
        assert resp.status == 200
        return dict(await resp.json())


async def test_status_shows_restart_counts_and_degrades_while_a_child_is_down(
        stack: Stack, settings: Settings, http: aiohttp.ClientSession) -> None:
    redis = aioredis.Redis.from_url(settings.redis.url)
    try:
        body = await status(http, stack)
        assert "processes" not in body  # no supervisor: a cluster, or these tests
        await redis.hset(keys.supervisor(), mapping={
            "scheduler": record("scheduler", "service", "running", 2),
            "valkey": record("valkey", "server", "restarting", 1),
            "broken": b"{not json",
        })
        assert [p.name for p in await read_processes(redis)] == ["valkey", "scheduler"]

        async def with_processes() -> dict[str, object] | None:
            got = await status(http, stack)
            return got if "processes" in got else None

        body = await eventually(with_processes, 30, "processes in the status")
        assert body["status"] == "degraded"
        services = {s["name"]: s for s in body["services"]}  # type: ignore[attr-defined]
        stores = {s["name"]: s for s in body["stores"]}  # type: ignore[attr-defined]
        assert services["scheduler"]["restarts"] == 2 and "restarts" not in services["api"]
        assert stores["redis"]["restarts"] == 1 and stores["redis"]["process"] == "restarting"
        assert {p["name"] for p in body["processes"]} == {"scheduler", "valkey"}  # type: ignore[attr-defined]

        await redis.hset(keys.supervisor(), "valkey", record("valkey", "server", "running", 1))
        await redis.hdel(keys.supervisor(), "broken")

        async def ok_again() -> bool:
            return (await status(http, stack))["status"] == "ok"

        await eventually(ok_again, 60, "status ok once every child runs")
    finally:
        await redis.aclose()
