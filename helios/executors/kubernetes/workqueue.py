"""A queue of keys (client-go's workqueue): queue keys, not payloads.

A key waits in the queue at most once however many events name it; a key being worked
on is not handed to a second worker, and if it is added meanwhile it comes back once the
first worker is done. So one attempt's events are handled in order, different attempts
in parallel, and the worker always re-reads the current state of its key.
"""

from __future__ import annotations

import asyncio
from collections import deque


class WorkQueue:
    def __init__(self) -> None:
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._again: set[str] = set()
        self._wake = asyncio.Event()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def add(self, key: str) -> None:
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.append(key)
            self._wake.set()

    def add_after(self, key: str, delay: float) -> None:
        """Look at `key` again in `delay` seconds (one timer per key: the earliest)."""
        loop = asyncio.get_running_loop()
        timer = self._timers.get(key)
        when = loop.time() + delay
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> str:
        while not self._queue:
            self._wake.clear()
            await self._wake.wait()
        key = self._queue.popleft()
        self._queued.discard(key)
        self._active.add(key)
        if self._queue:
            self._wake.set()  # more work: let another waiting worker take it
        return key

    def done(self, key: str) -> None:
        self._active.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def forget(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def idle(self) -> bool:
        return not self._queue and not self._active
