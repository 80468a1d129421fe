"""Redis client factory. Keys are named in `helios.keys`, nowhere else."""

from __future__ import annotations

import redis.asyncio as aioredis

from helios.settings import RedisSettings


def open_redis(settings: RedisSettings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.url,
        decode_responses=True,
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        health_check_interval=30,
        max_connections=256,
    )
