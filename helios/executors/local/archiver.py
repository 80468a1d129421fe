"""Attempt logs copied to S3 in the background, in bursts, from their spool files.

The lines are already in Redis (up to the cap) when an attempt reports; the object is
the whole log. It is uploaded from the attempt's spool file a part at a time, and the
file removed once stored, so the watcher's memory does not grow with what tasks print.
Uploading it right away put S3 request signing on the event loop exactly when
the next attempt's dispatch arrives (measured: +5 ms per chained task), so uploads wait
a moment and go out together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from helios import tasklogs
from helios.logs import log_fields

log = logging.getLogger(__name__)


class LogArchiver:
    def __init__(self, s3: Any, bucket: str, *, delay_s: float = 1.0, parallel: int = 8,
                 max_queued: int = 10_000):
        self.s3 = s3
        self.bucket = bucket
        self.delay_s = delay_s
        self.parallel = parallel
        self.queue: asyncio.Queue[tuple[str, str, int, Path]] = asyncio.Queue(max_queued)

    def submit(self, dag_id: str, task: str, attempt: int, spool: Path) -> None:
        try:
            self.queue.put_nowait((dag_id, task, attempt, spool))
        except asyncio.QueueFull:
            log.warning("log archive queue full; this attempt's log stays in Redis only",
                        extra=log_fields(dagId=dag_id, task=task, attempt=attempt))
            spool.unlink(missing_ok=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`, then once more for whatever is queued."""
        while not stop.is_set():
            first = asyncio.ensure_future(self.queue.get())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({first, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not first.done():
                first.cancel()
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.delay_s)
            await self._upload([first.result(), *self._drain()])
        await self._upload(self._drain())

    def _drain(self) -> list[tuple[str, str, int, Path]]:
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items

    async def _upload(self, items: list[tuple[str, str, int, Path]]) -> None:
        gate = asyncio.Semaphore(self.parallel)

        async def one(dag_id: str, task: str, attempt: int, spool: Path) -> None:
            async with gate:
                try:
                    await tasklogs.archive_file(self.s3, self.bucket, dag_id, task, attempt,
                                                spool)
                except Exception as exc:
                    log.warning("could not archive an attempt's log: %s", exc,
                                extra=log_fields(dagId=dag_id, task=task, attempt=attempt))
                finally:
                    spool.unlink(missing_ok=True)

        await asyncio.gather(*(one(*item) for item in items))
