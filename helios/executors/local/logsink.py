"""Log lines of one attempt: to Redis in batches, up to a cap; all of them to a spool file.

Memory stays bounded whatever a task prints: Redis gets at most `max_bytes` of the
attempt (then one truncation line naming the archive), and the whole log goes to a
spool file on disk, which the archiver uploads and removes; nothing keeps the text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import IO

import redis.asyncio as aioredis

from helios import tasklogs

log = logging.getLogger(__name__)

SPOOL_BUFFER = 1 << 20  # the spool is written through a 1 MiB buffer: few syscalls


class AttemptLog:
    """Lines arrive one by one from pipes; Redis gets them in batches (one RPUSH per
    flush) so a chatty task does not cost a round trip per line."""

    def __init__(self, redis: aioredis.Redis, dag_id: str, task: str, *, attempt: int = 1,
                 max_bytes: int = 8 * 1024**2, spool: Path | None = None,
                 bucket: str = "", flush_s: float = 0.05):
        self.redis = redis
        self.dag_id = dag_id
        self.task = task
        self.attempt = attempt
        self.max_bytes = max_bytes
        self.spool = spool
        self.bucket = bucket
        self.flush_s = flush_s
        self.kept = 0  # bytes of this attempt sent (or queued) to Redis
        self.total = 0  # bytes of this attempt seen
        self.cut: tasklogs.LogCut | None = None
        self._cut_stored = False
        self._file: IO[str] | None = None
        self._pending: list[str] = []
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._closed = False
        self._flusher: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.spool is not None:
            self.spool.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.spool.open("w", encoding="utf-8", errors="replace",
                                         buffering=SPOOL_BUFFER)
        self._flusher = asyncio.create_task(self._run(), name=f"logs:{self.dag_id}:{self.task}")

    def emit(self, line: str) -> None:
        cost = tasklogs.line_bytes(line)
        self.total += cost
        if self._file is not None:
            try:
                self._file.write(line + "\n")
            except OSError as exc:  # a full disk costs the archive, never the attempt
                log.warning("log spool write failed: %s", exc)
                self._drop_spool()
        if self.cut is not None:
            return
        if self.kept + cost > self.max_bytes:
            self.cut = tasklogs.LogCut(self.attempt, self.kept, tasklogs.archive_url(
                self.bucket, self.dag_id, self.task, self.attempt))
        else:
            self.kept += cost
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
            if self._file is not None:
                # On disk as often as in Redis: if this runner is killed, its successor
                # archives the lost attempt's spool, which then holds what was printed.
                try:
                    self._file.flush()
                except OSError as exc:
                    log.warning("log spool write failed: %s", exc)
                    self._drop_spool()
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
        if self.cut is not None and not self._cut_stored and not self._pending:
            # After every kept line (some may have queued up during the RPUSH above; the
            # next flush writes them first): the truncation line is the attempt's last.
            await tasklogs.append_cut(self.redis, self.dag_id, self.task, self.cut)
            self._cut_stored = True

    async def close(self) -> None:
        """Let the flusher finish its batch (never cut an RPUSH short), then write the rest."""
        self._closed = True
        self._closing.set()
        self._wake.set()
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flusher, 10.0)
        self._close_spool()
        await self.flush()

    def _close_spool(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                log.warning("log spool not written: %s", exc)
                self._drop_spool()
            self._file = None

    def _drop_spool(self) -> None:
        with contextlib.suppress(OSError):
            if self._file is not None:
                self._file.close()
        self._file = None
        if self.spool is not None:
            with contextlib.suppress(OSError):
                self.spool.unlink()
        self.spool = None
