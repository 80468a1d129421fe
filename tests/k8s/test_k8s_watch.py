"""`ListWatch` against the stand-in: resourceVersion bookkeeping, bookmarks, 410 Gone
(as an ERROR event and as HTTP 410), 429, a dead (silent) stream, a dropped connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helios.executors.kubernetes.client import JOBS, KubeApi
from helios.executors.kubernetes.watch import ListWatch, WatchPolicy
from helios.settings import Settings

from .conftest import kube_settings
from .helpers import kube_api
from .standin import Cluster

POLICY = WatchPolicy(backoff_s=(0.05, 0.1), silent_s=1.0, server_timeout_s=30)


def job(name: str, app: str = "helios-task") -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"app": app}}, "spec": {
        "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "ubuntu", "command": ["/bin/true"]}]}}}}


class Seen:
    def __init__(self) -> None:
        self.lists: list[list[str]] = []
        self.events: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    async def on_list(self, items: list[dict[str, Any]]) -> None:
        self.lists.append([i["metadata"]["name"] for i in items])
        self.changed.set()

    async def on_event(self, kind: str, obj: dict[str, Any]) -> None:
        self.events.append((kind, obj["metadata"]["name"]))
        self.changed.set()

    async def until(self, pred: Any, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not pred():
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def watching(api: KubeApi, policy: WatchPolicy = POLICY
                   ) -> AsyncIterator[tuple[ListWatch, Seen]]:
    lw, seen, stop = ListWatch(api, JOBS, "app=helios-task", policy), Seen(), asyncio.Event()
    task = asyncio.create_task(lw.run(seen.on_list, seen.on_event, stop))
    try:
        await seen.until(lambda: seen.lists)
        yield lw, seen
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def cfg(cluster: Cluster) -> Settings:
    return kube_settings(Settings(), cluster)


def created(seen: Seen, name: str) -> bool:
    return ("ADDED", name) in seen.events


async def test_list_then_watch_from_the_lists_version(cluster: Cluster, cfg: Settings) -> None:
    cluster.store.create("jobs", "helios", job("before"))
    async with kube_api(cfg) as api, watching(api) as (_, seen):
        assert seen.lists == [["before"]]
        cluster.store.create("jobs", "helios", job("after"))
        cluster.store.create("jobs", "helios", job("foreign", app="other"))
        await seen.until(lambda: created(seen, "after"))
        assert ("ADDED", "before") not in seen.events  # listed, not replayed
        assert ("ADDED", "foreign") not in seen.events  # the selector filters
        [watch] = [q for m, p, q in cluster.api.requests if q.get("watch") == "True"]
        assert watch["resourceVersion"] == cluster.api.list_versions[0]
        assert watch["allowWatchBookmarks"] == "True"


async def test_bookmarks_move_the_resource_version(cluster: Cluster, cfg: Settings) -> None:
    cluster.api.knobs.bookmark_interval_s = 0.05
    async with kube_api(cfg) as api, watching(api) as (lw, _):
        cluster.store.create("secrets", "helios", {"metadata": {"name": "unrelated"}})
        async with asyncio.timeout(5):
            await lw.wait_version(str(cluster.store.rv))  # no Job event: only a bookmark


@pytest.mark.parametrize("how", ["event", "http"])
async def test_410_gone_relists(cluster: Cluster, cfg: Settings, how: str) -> None:
    async with kube_api(cfg) as api, watching(api) as (lw, seen):
        cluster.api.mute()
        cluster.store.create("jobs", "helios", job("missed"))
        cluster.api.knobs.muted = False
        cluster.api.expire(how)
        await seen.until(lambda: len(seen.lists) == 2)
        assert seen.lists[1] == ["missed"]
        cluster.store.create("jobs", "helios", job("later"))
        await seen.until(lambda: created(seen, "later"))
        assert lw.lists == 2


async def test_a_dropped_connection_resumes_without_relisting(cluster: Cluster,
                                                               cfg: Settings) -> None:
    async with kube_api(cfg) as api, watching(api) as (lw, seen):
        cluster.api.mute()
        cluster.store.create("jobs", "helios", job("during"))
        cluster.api.knobs.muted = False
        cluster.api.break_watches()
        await seen.until(lambda: created(seen, "during"))
        assert lw.lists == 1


async def test_a_silent_stream_is_treated_as_dead(cluster: Cluster, cfg: Settings) -> None:
    async with kube_api(cfg) as api, watching(api) as (lw, seen):
        cluster.api.mute()  # the open stream is dead from now on, even once unmuted
        cluster.store.create("jobs", "helios", job("unheard"))
        before = cluster.api.count("GET", "/jobs", watch=True)
        cluster.api.knobs.muted = False  # a new connection would hear again; the old is dead
        await seen.until(lambda: created(seen, "unheard"), timeout=POLICY.silent_s + 3)
        assert cluster.api.count("GET", "/jobs", watch=True) > before
        assert lw.lists == 1


async def test_429_waits_retry_after_then_resumes(cluster: Cluster, cfg: Settings) -> None:
    async with kube_api(cfg) as api, watching(api) as (_, seen):
        cluster.api.fail("GET", "/jobs", 429, times=1, retry_after=1)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        # The broken stream ends before it sends anything newer: "throttled" comes only
        # through the resumed watch, after the 429's Retry-After.
        cluster.api.break_watches()
        cluster.store.create("jobs", "helios", job("throttled"))
        await seen.until(lambda: created(seen, "throttled"))
        assert loop.time() - t0 >= 0.9
