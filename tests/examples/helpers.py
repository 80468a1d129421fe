"""What the example tests share: the examples' files, API calls, a generous poll."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import redis.asyncio as aioredis

from helios import keys

T = TypeVar("T")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEADLINE_S = 90.0  # CI may run at load 5 and more


def example(name: str, file: str = "dag.yaml") -> str:
    return (EXAMPLES / name / file).read_text()


async def call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
               ) -> tuple[int, Any]:
    async with http.request(method, url, **kwargs) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


async def put_template(http: aiohttp.ClientSession, api: str, name: str) -> None:
    status, body = await call(http, "PUT", f"{api}/api/v1/templates/{name}",
                              data=example(name),
                              headers={"Content-Type": "application/yaml"})
    assert status == 201, body


async def until(check: Callable[[], Awaitable[T | None]], what: str,
                deadline_s: float = DEADLINE_S) -> T:
    """Poll `check` until it returns something truthy."""
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
    return [str(r) for r in await redis.zrange(keys.runs_by_name(name), 0, -1)]


def tasks_of(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in status["tasks"]}
