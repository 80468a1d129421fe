"""Per-run ordered processing: one run's messages in order, different runs in parallel.

Messages are queued by run id; a run's worker takes everything queued for it as one
batch (one state load, one write), which keeps a 1000-task fan-out cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from prometheus_client import Gauge

log = logging.getLogger(__name__)

M = TypeVar("M")

QUEUED = Gauge("helios_scheduler_queued_messages", "Messages waiting for their run's worker")
ACTIVE = Gauge("helios_scheduler_active_runs", "Runs being evaluated right now")


class RunQueues(Generic[M]):
    def __init__(self, handler: Callable[[str, list[M]], Awaitable[None]], max_active: int):
        self.handler = handler
        self.pending: dict[str, list[M]] = {}
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.limit = asyncio.Semaphore(max_active)
        # Every item taken and not yet settled (queued or being handled), by identity,
        # with when it was last known alive: see `keep_alive`.
        self.held: dict[int, tuple[float, M]] = {}

    def put(self, key: str, item: M) -> None:
        self.pending.setdefault(key, []).append(item)
        self.held[id(item)] = (time.monotonic(), item)
        QUEUED.inc()
        if key not in self.workers:
            self.workers[key] = asyncio.create_task(self._work(key), name=f"run:{key}")

    async def _work(self, key: str) -> None:
        try:
            async with self.limit:
                while batch := self.pending.pop(key, None):
                    QUEUED.dec(len(batch))
                    ACTIVE.inc()
                    try:
                        await self.handler(key, batch)
                    except Exception:
                        # The handler settles its own messages; this is a bug guard.
                        log.exception("run worker failed", extra={"dagId": key})
                    finally:
                        ACTIVE.dec()
                        for item in batch:
                            self.held.pop(id(item), None)
        finally:
            self.workers.pop(key, None)

    async def keep_alive(self, touch: Callable[[list[M]], Awaitable[None]], every_s: float,
                         stop: asyncio.Event) -> None:
        """Until `stop`: every `every_s`, `touch` the items held longer than that (a
        backlog behind busy runs, a slow evaluation), so the bus does not redeliver them
        meanwhile. Items settled within `every_s` (nearly all) cost nothing."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
            now = time.monotonic()
            due = [(k, item) for k, (since, item) in self.held.items() if now - since >= every_s]
            for k, item in due:
                self.held[k] = (now, item)
            if due:
                await touch([item for _, item in due])

    async def drain(self, timeout_s: float) -> list[M]:
        """Wait for in-flight batches; returns what was queued but never started."""
        dropped = [item for items in self.pending.values() for item in items]
        for item in dropped:
            self.held.pop(id(item), None)
        self.pending.clear()
        QUEUED.dec(len(dropped))
        workers = list(self.workers.values())
        if workers:
            _, late = await asyncio.wait(workers, timeout=timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        return dropped
