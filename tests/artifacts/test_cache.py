"""NodeCache: the bound, pins, workspace isolation, verification markers, lock hygiene."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from helios.artifacts import flock
from helios.artifacts.cache import NodeCache, Placement
from helios.artifacts.downloader import s3_fetch
from helios.messages import InputArtifact
from helios.settings import Settings

from .support import publish, random_bytes

SIZE = 1000


async def objects(s3: Any, settings: Settings, tmp: Path, *names: str) -> dict[str, InputArtifact]:
    files = {name: random_bytes(SIZE) for name in names}
    return {i.name: i for i in await publish(s3, settings, tmp, files)}


async def put(
    cache: NodeCache, s3: Any, settings: Settings, item: InputArtifact, dest: Path
) -> Placement:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fetch = s3_fetch(s3, settings.s3.bucket, item)
    return await cache.place(item.sha256, item.size, dest, fetch)


async def test_lru_eviction_skips_pinned_entries(
    s3: Any, settings: Settings, tmp_path: Path
) -> None:
    o = await objects(s3, settings, tmp_path, "a", "b", "c", "d", "e")
    cache = NodeCache(tmp_path / "cache", 3 * SIZE)
    ws = tmp_path / "w"
    for name in "abc":
        assert not (await put(cache, s3, settings, o[name], ws / name)).hit
    assert (await put(cache, s3, settings, o["a"], ws / "a2")).hit  # a is now the newest

    await put(cache, s3, settings, o["d"], ws / "d")  # evicts b, the least recently used
    assert [cache.contains(o[n].sha256) for n in "abcd"] == [True, False, True, True]

    async with cache.pin(o["c"].sha256):  # c is the oldest now, but in use
        await put(cache, s3, settings, o["e"], ws / "e")
    assert [cache.contains(o[n].sha256) for n in "acde"] == [False, True, True, True]
    assert await cache.usage() == 3 * SIZE


async def test_an_object_that_cannot_fit_bypasses_the_cache(
    s3: Any, settings: Settings, tmp_path: Path
) -> None:
    o = await objects(s3, settings, tmp_path, "a", "b")
    cache = NodeCache(tmp_path / "cache", SIZE + SIZE // 2)
    await put(cache, s3, settings, o["a"], tmp_path / "w" / "a")
    async with cache.pin(o["a"].sha256):
        placed = await put(cache, s3, settings, o["b"], tmp_path / "w" / "b")
    assert placed == Placement(hit=False, cached=False, method="download")
    assert (tmp_path / "w" / "b").stat().st_size == SIZE  # and verified by its sha256
    assert cache.contains(o["a"].sha256) and not cache.contains(o["b"].sha256)
    assert await cache.usage() == SIZE

    tiny = NodeCache(tmp_path / "tiny", SIZE - 1)  # larger than the whole bound
    placed = await put(tiny, s3, settings, o["a"], tmp_path / "w2" / "a")
    assert not placed.cached and await tiny.usage() == 0


async def test_workspace_writes_never_reach_the_cache_entry(
    s3: Any, settings: Settings, tmp_path: Path
) -> None:
    o = await objects(s3, settings, tmp_path, "a")
    cache = NodeCache(tmp_path / "cache", 10 * SIZE)
    dest = tmp_path / "w1" / "a"
    placed = await put(cache, s3, settings, o["a"], dest)
    assert placed.method in ("reflink", "copy")
    data = dest.read_bytes()

    # User code owns its copy and may scribble on it (as root here, even on 0444 files).
    scribble(dest)
    entry = cache.entry(o["a"].sha256)
    assert entry.read_bytes() == data
    assert os.stat(entry).st_mode & 0o777 == 0o444

    again = await put(cache, s3, settings, o["a"], tmp_path / "w2" / "a")
    assert again.hit and not again.rehashed  # the marker still vouches for it
    assert (tmp_path / "w2" / "a").read_bytes() == data


async def test_hardlink_mode_shares_the_inode_and_keeps_hits_cheap(
    s3: Any, settings: Settings, tmp_path: Path
) -> None:
    o = await objects(s3, settings, tmp_path, "a")
    cache = NodeCache(tmp_path / "cache", 10 * SIZE, hardlink=True)
    first = await put(cache, s3, settings, o["a"], tmp_path / "w1" / "a")
    second = await put(cache, s3, settings, o["a"], tmp_path / "w2" / "a")
    assert first.method == second.method == "link"
    assert second.hit and not second.rehashed
    entry = os.stat(cache.entry(o["a"].sha256))
    placed = os.stat(tmp_path / "w2" / "a")
    assert (placed.st_ino, placed.st_mode & 0o777) == (entry.st_ino, 0o444)


async def test_hits_are_rehashed_only_without_a_valid_marker(
    s3: Any, settings: Settings, tmp_path: Path
) -> None:
    o = await objects(s3, settings, tmp_path, "a")
    cache = NodeCache(tmp_path / "cache", 10 * SIZE)
    await put(cache, s3, settings, o["a"], tmp_path / "w" / "a")
    assert not (await put(cache, s3, settings, o["a"], tmp_path / "w" / "b")).rehashed
    os.unlink(cache.root / "meta" / o["a"].sha256[:2] / o["a"].sha256)
    rehashed = await put(cache, s3, settings, o["a"], tmp_path / "w" / "c")
    assert rehashed.hit and rehashed.rehashed and not rehashed.dropped
    assert not (await put(cache, s3, settings, o["a"], tmp_path / "w" / "d")).rehashed


async def test_reservations_of_dead_fetchers_are_reclaimed(tmp_path: Path) -> None:
    cache = NodeCache(tmp_path / "cache", 10 * SIZE)
    alive, dead = "a" * 64, "b" * 64
    async with cache.pin(alive), cache.pin(dead):
        pass  # creates the folders
    for digest in (alive, dead):
        tmp = cache.entry(digest).with_name(f".{digest}.0123456789ab.tmp")
        tmp.write_bytes(b"\0" * SIZE)
    # A live fetcher holds its digest's fetch lock; a dead one's lock is free.
    fd = await flock.acquire(cache.root / "locks" / "aa" / f"{alive}.fetch", shared=False)
    try:
        assert await cache.usage() == SIZE
        remaining = [p.name for p in (cache.root / "sha256").rglob(".*.tmp")]
        assert remaining == [f".{alive}.0123456789ab.tmp"]
    finally:
        flock.release(fd)
    assert await cache.usage() == 0
    assert not list((cache.root / "locks").rglob("*.pin"))  # orphan lock files go too


async def test_a_cancelled_lock_wait_does_not_leak_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    holder = await flock.acquire(path, shared=False)
    waiter = asyncio.create_task(flock.acquire(path, shared=False))
    # One loop turn runs the task to its first await: the wait in a thread. A yield,
    # not a timing guess: the assertions hold wherever the cancel lands.
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    flock.release(holder)
    fd = await asyncio.wait_for(flock.acquire(path, shared=False), 5)
    flock.release(fd)


async def test_digests_are_checked_before_becoming_paths(tmp_path: Path) -> None:
    cache = NodeCache(tmp_path / "cache", SIZE)
    with pytest.raises(ValueError, match="not a sha256"):
        cache.contains("../../etc/passwd")
    with pytest.raises(ValueError, match="not a sha256"):
        async with cache.pin("AB" * 32):
            pass


def scribble(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(b"user code was here")
