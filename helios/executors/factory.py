"""Pick the backend named by `HELIOS_EXECUTOR` for the scheduler and the watcher."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from nats.aio.client import Client as NATS

from helios.executors.base import Executor, TaskSource
from helios.settings import Settings


@contextlib.asynccontextmanager
async def open_executor(settings: Settings, nc: NATS, redis: aioredis.Redis) -> AsyncIterator[Executor]:
    """Scheduler side."""
    if settings.executor == "kubernetes":
        from helios.executors.kubernetes import open_kubernetes_executor

        async with open_kubernetes_executor(settings) as k8s:
            yield k8s
        return
    from helios.executors.local.dispatcher import LocalDispatcher

    dispatcher = LocalDispatcher(nc, nc.jetstream(), settings)
    try:
        yield dispatcher
    finally:
        await dispatcher.close()


@contextlib.asynccontextmanager
async def open_task_source(
    settings: Settings, nc: NATS, redis: aioredis.Redis, s3: Any
) -> AsyncIterator[TaskSource]:
    """Watcher side."""
    if settings.executor == "kubernetes":
        from helios.executors.kubernetes import open_kubernetes_source

        async with open_kubernetes_source(settings, redis, s3) as source:
            yield source
        return
    from helios.executors.local.runner import LocalRunner

    yield LocalRunner(settings, nc, redis, s3)
