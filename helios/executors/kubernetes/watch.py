"""List, then watch from the list's resourceVersion (kopf's and client-go's reflector).

One `ListWatch` follows one resource kind with a label selector and feeds a handler:
`on_list(items)` after every (re-)list, with the complete current set, and
`on_event(type, object)` for each ADDED/MODIFIED/DELETED. It keeps the resourceVersion
of every event and bookmark, re-lists on 410 Gone (HTTP 410 or an ERROR event with code
410), honours 429's retryAfterSeconds, backs off between failed reconnects, and treats a
stream that stays silent longer than `silent_s` as dead. A watch the server ends on its
own `timeoutSeconds` is simply resumed from the last resourceVersion.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from helios.executors.kubernetes.client import Kind, KubeApi, KubeError

log = logging.getLogger(__name__)

OnList = Callable[[list[dict[str, Any]]], Awaitable[None]]
OnEvent = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class WatchPolicy:
    backoff_s: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
    silent_s: float = 70.0  # bookmarks come about every minute; silence beyond is death
    server_timeout_s: int = 300  # asked of the server, jittered so watches do not align


class Relist(Exception):
    """The resourceVersion is gone (410): only a fresh list can catch up."""


class ListWatch:
    def __init__(self, api: KubeApi, kind: Kind, selector: str, policy: WatchPolicy):
        self.api = api
        self.kind = kind
        self.selector = selector
        self.policy = policy
        self.resource_version: str | None = None
        self.lists = 0  # how many lists so far (tests and logs)
        self._moved = asyncio.Event()  # replaced by a fresh one at every new version
        self._heard = False  # the current stream delivered an event or bookmark

    def _advance(self, version: str) -> None:
        self.resource_version = version
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def wait_version(self, version: str) -> None:
        """Until this watch has caught up with `version` (an event or bookmark at least
        that recent)."""
        while self.resource_version is None or int(self.resource_version) < int(version):
            await self._moved.wait()

    def _pause(self, failures: int, hint: float | None = None) -> float:
        if hint is not None:
            return hint
        steps = self.policy.backoff_s
        return steps[min(failures, len(steps) - 1)]

    async def run(self, on_list: OnList, on_event: OnEvent, stop: asyncio.Event) -> None:
        failures = 0  # in a row, without an event in between: the backoff step
        while not stop.is_set():
            pause: float = 0.0
            self._heard = False
            try:
                if self.resource_version is None:
                    items, version = await self.api.list(self.kind, self.selector)
                    self.lists += 1
                    self._advance(version)
                    await on_list(items)
                await self._stream(on_event, stop)
                failures = 0  # a clean end: the server's timeout; resume at once
            except (Relist, KubeError) as exc:
                if self._heard:
                    failures = 0
                gone = isinstance(exc, Relist) or exc.code == 410
                hint = exc.retry_after if isinstance(exc, KubeError) and exc.code == 429 \
                    else None
                # A 410 right after a list is odd: re-list at once the first time only.
                pause = 0.0 if gone and not failures else self._pause(failures, hint)
                failures += 1
                if gone:
                    log.info("watch %s: resourceVersion expired, re-listing", self.kind.name)
                    self.resource_version = None
                else:
                    log.warning("watch %s failed (%s); retrying in %.1fs", self.kind.name,
                                exc, pause)
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
                if self._heard:
                    failures = 0
                pause = self._pause(failures)
                failures += 1
                log.warning("watch %s broke (%s: %s); reconnecting in %.1fs",
                            self.kind.name, type(exc).__name__, exc, pause)
            if pause:
                # Wake early on stop: waits are bounded and never outlive the service.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)

    async def _stream(self, on_event: OnEvent, stop: asyncio.Event) -> None:
        assert self.resource_version is not None
        timeout = int(self.policy.server_timeout_s * random.uniform(0.9, 1.1)) or 1
        async with self.api.watch(self.kind, self.selector, self.resource_version,
                                  timeout, self.policy.silent_s) as events:
            async for event in events:
                if stop.is_set():
                    return
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    # kubernetes-asyncio hands these over as data: a Status object.
                    code = int(obj.get("code") or 0)
                    if code == 410:
                        raise Relist()
                    raise KubeError.from_status(code or 500, obj)
                self._heard = True
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    self._advance(str(version))
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    await on_event(kind, obj)
