"""Buffered log lines of one attempt: written to Redis in batches, kept for the archive."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis

from helios import tasklogs

log = logging.getLogger(__name__)


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
        self._closing = asyncio.Event()
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
            try:
                await self.flush()
            except Exception as exc:  # kept for the next flush; the loop goes on
                log.warning("log lines not stored yet: %s", exc)
            # Pause between batches, but end the pause at once when the attempt ends.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.flush_s)

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            await tasklogs.append_lines(self.redis, self.dag_id, self.task, batch)
        except BaseException:
            self._pending[:0] = batch  # not lost: first in line for the next flush
            raise

    async def close(self) -> None:
        """Let the flusher finish its batch (never cut an RPUSH short), then write the rest."""
        self._closed = True
        self._closing.set()
        self._wake.set()
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flusher, 10.0)
        await self.flush()

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")
