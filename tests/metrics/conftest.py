"""Fixtures of the metrics tests: clients of the session's real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
import redis.asyncio as aioredis
from nats.js import JetStreamContext

from helios import bus, subjects
from helios.settings import Settings
from helios.store import open_redis


@pytest.fixture
async def js(settings: Settings) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(settings.nats.url)
    jsc = nc.jetstream()
    await bus.ensure_streams(jsc, subjects.STREAMS)
    yield jsc
    await nc.close()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = open_redis(settings.redis)
    yield client
    await client.aclose()
