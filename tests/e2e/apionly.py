"""The API and the metrics service alone, on the session's real servers: what is
submitted is stored and queued but never run (no scheduler, no watcher)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from helios.settings import Settings
from tests.stack import Stack, running_stack


@contextlib.asynccontextmanager
async def api_only(settings: Settings) -> AsyncIterator[Stack]:
    async with running_stack(settings, only=("metrics", "api")) as stack:
        yield stack
