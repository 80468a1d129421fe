"""Buffered log lines of one attempt: written to Redis in batches, kept for the archive."""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis

from helios import tasklogs


class AttemptLog:
    """Lines arrive one by one from pipes; Redis gets them in batches (one RPUSH per
    flush) so a chatty task does not cost a round trip per line."""

    def __init__(self, redis: aioredis.Redis, dag_id: str, task: str, flush_s: float = 0.05):
        self.redis = redis
        self.dag_id = dag_id
        self.task = task
        self.flush_s = flush_s
        self.lines: list[str] = []
        self._pending: list[str] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._flusher: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._flusher = asyncio.create_task(self._run(), name=f"logs:{self.dag_id}:{self.task}")

    def emit(self, line: str) -> None:
        self.lines.append(line)
        self._pending.append(line)
        self._wake.set()

    async def _run(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            if not self._closed:
                await asyncio.sleep(self.flush_s)

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        await tasklogs.append_lines(self.redis, self.dag_id, self.task, batch)

    async def close(self) -> None:
        """Stop the flusher (it may be pausing between batches) and write the rest now."""
        self._closed = True
        if self._flusher and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(BaseException):
                await self._flusher
        await self.flush()

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")
