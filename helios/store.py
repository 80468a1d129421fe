"""Redis client factory. Keys are named in `helios.keys`, nowhere else."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from helios.settings import RedisSettings

# After a Valkey restart every pooled connection is dead; the first command on each one
# fails with "Connection closed by server" before anything reached the server. A few
# quick retries on a fresh connection ride through that instead of failing the caller.
RETRIES = 4


def open_redis(settings: RedisSettings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.url,
        decode_responses=True,
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        health_check_interval=30,
        max_connections=256,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), RETRIES),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


def as_text(value: object) -> str:
    """A reply as text: `open_redis` decodes responses, a raw client does not, and
    redis-py's types cannot tell which."""
    return value.decode() if isinstance(value, bytes) else str(value)
