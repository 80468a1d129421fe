"""Where task log lines go: Redis (`dag:{dagId}:task:{name}:logs`) and, per attempt,
an object `dags/{dagId}/tasks/{task}/logs/{attempt}.log` in the artifacts bucket."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from helios import keys, objects

ATTEMPT_BANNER = "[HELIOS] ---- attempt {attempt} ----"


async def append_lines(redis: aioredis.Redis, dag_id: str, task: str, lines: Sequence[str]) -> None:
    if lines:
        await redis.rpush(keys.task_logs(dag_id, task), *lines)


async def read_lines(
    redis: aioredis.Redis, dag_id: str, task: str, start: int = 0, end: int = -1
) -> list[str]:
    return list(await redis.lrange(keys.task_logs(dag_id, task), start, end))


async def archive_attempt(
    s3: Any, bucket: str, dag_id: str, task: str, attempt: int, text: str
) -> str:
    """Store one attempt's whole log as an object; returns its key."""
    key = objects.log(dag_id, task, attempt)
    await s3.put_object(Bucket=bucket, Key=key, Body=text.encode(), ContentType="text/plain")
    return key
