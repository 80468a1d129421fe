"""The firing loops' lifecycle inside the api process.

`running(...)` starts, as named and guarded tasks:
- `firing-ticks`: every `tick_s` (or at once when a handler changed a definition), while
  this instance holds the firing lease, one pass over the schedules and one over the
  active backfills;
- `firing-objects`: every `objects_poll_s`, under the same lease, one poll of each
  object trigger;
- `firing-chains`: the durable consumer of run terminal events (chained runs); the
  replicas share it, JetStream hands each event to one of them.
On exit it lets the passes in flight finish (each bounded by `pass_timeout_s`), then
releases the lease so another instance takes over at once rather than after its TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from helios import bus
from helios.runtime import StopEvent, cancel_all, guard
from helios.subjects import Streams
from services.api.context import ApiContext
from services.api.firing import store
from services.api.firing.backfill import backfills_pass
from services.api.firing.chain import DURABLE, FILTER, ChainConsumer
from services.api.firing.context import FiringContext
from services.api.firing.objects import objects_pass
from services.api.firing.ticker import schedules_pass
from services.api.parsing import ParserPool

log = logging.getLogger(__name__)

FIRING = web.AppKey("firing", FiringContext)


class Firing:
    def __init__(self, f: FiringContext, instance: str | None = None):
        self.f = f
        self.instance = instance or uuid.uuid4().hex[:12]
        self.leader = False
        self.objects_wake = asyncio.Event()

    async def hold(self) -> bool:
        """Take or renew the lease; a store that does not answer means "not now"."""
        try:
            held = await asyncio.wait_for(
                store.hold_lease(self.f.c.redis, self.instance, self.f.settings.lease_ttl_s),
                self.f.settings.lease_ttl_s / 2)
        except Exception as exc:
            log.warning("firing lease not renewed: %s", exc)
            held = False
        if held != self.leader:
            log.info("firing loops %s", "taken over" if held else "left to another instance",
                     extra={"instance": self.instance})
        self.leader = held
        return held

    async def _pass(self, name: str, work: Callable[[], Awaitable[Any]]) -> None:
        try:
            async with asyncio.timeout(self.f.settings.pass_timeout_s):
                await work()
        except Exception:
            # A store or bus hiccup: logged, the next tick tries again.
            log.exception("firing pass %s failed", name)

    async def tick(self) -> None:
        """One pass of the schedules and the backfills (the finite mode tests use)."""
        await self._pass("schedules", lambda: schedules_pass(self.f, datetime.now(UTC)))
        await self._pass("backfills", lambda: backfills_pass(self.f))

    async def poll_objects(self) -> None:
        await self._pass("objects", lambda: objects_pass(self.f))

    async def ticks(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if await self.hold():
                await self.tick()
            if self.f.changed.is_set():
                self.objects_wake.set()
            self.f.changed.clear()
            await _wait(stop, self.f.changed, self.f.settings.tick_s)

    async def objects(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.leader:
                await self.poll_objects()
            self.objects_wake.clear()
            await _wait(stop, self.objects_wake, self.f.settings.objects_poll_s)


async def _wait(stop: asyncio.Event, wake: asyncio.Event, timeout_s: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


@contextlib.asynccontextmanager
async def running(c: ApiContext, parser: ParserPool, app: web.Application,
                  stop: StopEvent) -> AsyncIterator[Firing | None]:
    """The firing loops for as long as the block runs (none when disabled)."""
    f = FiringContext(c, parser, c.settings.firing)
    app[FIRING] = f
    if not c.settings.firing.enabled:
        yield None
        return
    firing = Firing(f)
    done = asyncio.Event()  # our own stop: set by the service's stop, or by leaving the block
    sub = await bus.ensure_consumer(c.js, bus.Consumer(
        stream=Streams().runs, durable=DURABLE, filter_subject=FILTER, batch=64))
    # A loop that crashes stops the api (its supervisor restarts it, recreating what the
    # loop needs, e.g. the chains' durable consumer): a silent half-api is worse.
    tasks = [
        guard(firing.ticks(done), "firing-ticks", stop),
        guard(firing.objects(done), "firing-objects", stop),
        guard(bus.pull_forever(sub, ChainConsumer(f).on_batch, batch=64, stop=done,
                               idle_timeout_s=1.0), "firing-chains", stop),
    ]
    relay = asyncio.ensure_future(_relay(stop, done))
    try:
        yield firing
    finally:
        done.set()
        relay.cancel()
        # Passes in flight finish (bounded); then the lease goes, for a fast takeover.
        _, pending = await asyncio.wait(tasks, timeout=min(c.settings.drain_timeout_s,
                                                           f.settings.pass_timeout_s))
        await cancel_all(list(pending))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(store.release_lease(c.redis, firing.instance), 2.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sub.unsubscribe(), 2.0)


async def _relay(stop: asyncio.Event, done: asyncio.Event) -> None:
    await stop.wait()
    done.set()
