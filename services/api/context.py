"""Clients and state the API's handlers share, owned by the app's cleanup context."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from helios.definitions import Definitions
from helios.health import Health
from helios.settings import Settings


@dataclass
class ApiContext:
    settings: Settings
    nc: NATS
    js: JetStreamContext
    redis: aioredis.Redis
    s3: Any
    http: aiohttp.ClientSession
    health: Health
    definitions: Definitions
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)


CTX = web.AppKey("ctx", ApiContext)


def ctx(request: web.Request) -> ApiContext:
    return request.app[CTX]
