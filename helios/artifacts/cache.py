"""The node cache: content-addressed by sha256, verified, bounded, shared by processes.

Every process on a node that places inputs (local executor attempts, the init containers
of pods sharing the hostPath) uses the same folder; nothing but the file system and
`flock` coordinates them.

Layout under `root`:

    sha256/ab/abcdef…          an entry, mode 0444, named by its sha256
    sha256/ab/.abcdef….x.tmp   a download in progress, created at its full size
    meta/ab/abcdef…            "verified" marker; its mtime is the entry's last use (LRU)
    locks/ab/abcdef….pin       shared while placing, exclusive while evicting
    locks/ab/abcdef….fetch     exclusive while checking or fetching one entry
    locks/space.lock           exclusive while making room and reserving it

Placement rule (user code must never be able to change an entry). A hard link shares
the entry's inode: its owner, or root, can `chmod` it back to writable and rewrite the
bytes every later task would be served. So by default a placement is a reflink
(FICLONE: a new inode sharing blocks copy-on-write, free on XFS/btrfs), else a copy
(`copy_file_range`, in-kernel). A hard link is used only with `hardlink=True`, which the
caller may set only when user code provably cannot write the inode: the workspace is
mounted read-only in the user's container, or user code runs as a non-root uid other
than the entry's owner (0444 and not the owner: no write, no chmod).

Verification. A fetch is hashed as it streams, so a new entry is born verified. A hit
must be verified too, but re-reading gigabytes on every hit would cost what the cache
saves; so after a full check we write a marker holding the entry's (dev, inode, size,
mtime, ctime). A hit whose stat matches its marker is trusted; any other hit is fully
re-hashed. ctime is the key part: every write or chmod moves it and no unprivileged
process can set it back (mtime can be forged with `utime`). A mismatch drops the entry
(logged) and fetches it again. Limits: silent media corruption under an unchanged inode
is not caught by the marker; hard links move ctime, so in `hardlink` mode the marker is
re-recorded after linking and an entry is re-hashed after a workspace goes away.

Concurrency. Per digest, an in-process asyncio lock plus an exclusive flock on the
`.fetch` file serialise check-and-fetch, so N placers download once and N-1 see a hit.
Every placer holds a shared flock on the `.pin` file from check to placement; eviction
takes it exclusive without waiting and skips the entry when that fails, so an entry is
never evicted while someone places it. Lock order is always pin → fetch → space, and
holders of `space` only ever try other locks without blocking, so there is no deadlock.
A download goes to a temp file in the entry's folder, is fsynced and renamed: a partial
download is never visible under the entry's name.

Bound. Under the space lock a fetcher scans the cache, evicts least recently used,
unpinned entries until its object fits, then creates its temp file at full size before
releasing the lock, so concurrent fetchers see each other's reservations and the total
never exceeds `max_bytes`. An object that cannot fit (larger than `max_bytes`, or the
rest is pinned) bypasses the cache: it is downloaded straight to its destination. Temp
files whose fetcher is gone (no `.fetch` lock held) are removed by the scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import stat
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from helios.artifacts import flock
from helios.artifacts.files import (
    AtomicWriter,
    in_thread,
    place_file,
    sha256_file,
    temp_name,
    write_stream,
)
from helios.logs import log_fields

log = logging.getLogger(__name__)

Fetch = Callable[[], AsyncGenerator[bytes, None]]
"""Opens the object and yields its bytes; called at most once per placement."""

_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Placement:
    hit: bool  # served from the cache, no request to S3
    cached: bool  # the object is in the cache now (False: it could not fit, see "Bound")
    dropped: bool = False  # a cached copy failed verification, was dropped and refetched
    rehashed: bool = False  # the hit was verified by a full read (no valid marker)
    method: str = "copy"  # how it reached dest: link, reflink, copy, or download


class _Check(Enum):
    OK = "ok"
    REHASHED = "rehashed"
    MISSING = "missing"
    DROPPED = "dropped"


class NodeCache:
    def __init__(self, root: Path, max_bytes: int, *, hardlink: bool = False):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.hardlink = hardlink
        self._fetching = _KeyedLocks()
        self._space = asyncio.Lock()

    # --- paths ----------------------------------------------------------------------

    def entry(self, digest: str) -> Path:
        return self.root / "sha256" / digest[:2] / digest

    def _marker(self, digest: str) -> Path:
        return self.root / "meta" / digest[:2] / digest

    def _lock(self, digest: str, kind: str) -> Path:
        return self.root / "locks" / digest[:2] / f"{digest}.{kind}"

    def _dirs(self, digest: str) -> None:
        for part in ("sha256", "meta", "locks"):
            (self.root / part / digest[:2]).mkdir(parents=True, exist_ok=True)

    # --- the public operations -------------------------------------------------------

    def contains(self, digest: str) -> bool:
        return self.entry(_checked(digest)).exists()

    async def place(
        self, digest: str, size: int, dest: Path, fetch: Fetch, *, what: str = ""
    ) -> Placement:
        """Put the object `digest` (`size` bytes) at `dest`, from the cache or via `fetch`.

        Raises `DigestMismatch` when fetched bytes do not match `digest` and `size`.
        """
        what = what or f"sha256 {_checked(digest)[:12]}"
        async with self.pin(digest):
            async with self._fetch_lock(digest):
                state = await in_thread(self._check, digest, size)
                hit = state in (_Check.OK, _Check.REHASHED)
                cached = hit or await self._fetch(digest, size, fetch, what)
            if cached:
                method = await in_thread(self._place, digest, dest)
                return Placement(
                    hit=hit, cached=True, dropped=state is _Check.DROPPED,
                    rehashed=state is _Check.REHASHED, method=method,
                )
        # No room: fetch outside every lock so waiters on this digest are not held up.
        await write_stream(dest, fetch, (digest, size), what)
        dropped = state is _Check.DROPPED
        return Placement(hit=False, cached=False, dropped=dropped, method="download")

    @asynccontextmanager
    async def pin(self, digest: str) -> AsyncIterator[None]:
        """Keep `digest` from being evicted, by this or any other process, while inside."""
        await in_thread(self._dirs, _checked(digest))  # also creates entry folders
        fd = await flock.acquire(self._lock(digest, "pin"), shared=True)
        try:
            yield
        finally:
            flock.release(fd)

    async def usage(self) -> int:
        """Bytes held: entries plus reservations of downloads in progress."""
        async with self._space_lock():
            return (await in_thread(self._scan))[1]

    async def trim(self, need: int = 0) -> bool:
        """Evict LRU, unpinned entries until `need` more bytes fit; False if they cannot."""
        async with self._space_lock():
            return await in_thread(self._make_room, need)

    # --- check, fetch, place ----------------------------------------------------------

    def _check(self, digest: str, size: int) -> _Check:
        entry = self.entry(digest)
        try:
            before = os.lstat(entry)
        except FileNotFoundError:
            return _Check.MISSING
        if before.st_size == size and self._read_marker(digest) == _stat_key(before):
            return _Check.OK
        if not stat.S_ISREG(before.st_mode):
            reason = "not a regular file"
        elif before.st_size != size:
            reason = f"size {before.st_size}, expected {size}"
        else:
            got, _ = sha256_file(entry)
            after = os.stat(entry)
            if got != digest:
                reason = f"content has sha256 {got}"
            elif _stat_key(after) != _stat_key(before):
                reason = "modified while being verified"
            else:
                if after.st_mode & 0o7777 != 0o444:
                    os.chmod(entry, 0o444)  # someone loosened it; the bytes are still right
                    after = os.stat(entry)
                self._write_marker(digest, after)
                return _Check.REHASHED
        log.warning(
            "cache entry %s failed verification (%s); dropped, fetching again", digest, reason,
            extra=log_fields(sha256=digest, path=str(entry)),
        )
        self._drop(digest)
        return _Check.DROPPED

    async def _fetch(self, digest: str, size: int, fetch: Fetch, what: str) -> bool:
        """Download into the cache; False (nothing fetched) when the object cannot fit."""
        if size > self.max_bytes:
            return False
        writer = AtomicWriter(
            self.entry(digest), (digest, size), what,
            tmp=temp_name(self.entry(digest)), mode=0o444, durable=True,
        )
        try:
            async with self._space_lock():
                if not await in_thread(self._make_room, size):
                    log.warning(
                        "node cache full of entries in use; %s bypasses the cache", what,
                        extra=log_fields(sha256=digest, size=size),
                    )
                    return False
                # Synchronous on purpose: no await (no cancellation) between creating the
                # reservation and the `finally` that removes it on failure.
                writer.open(reserve=True)
            async with contextlib.aclosing(fetch()) as chunks:
                async for chunk in chunks:
                    await writer.write(chunk)
            await writer.commit()
        finally:
            writer.discard()
        await in_thread(self._write_marker, digest, os.stat(self.entry(digest)))
        return True

    def _place(self, digest: str, dest: Path) -> str:
        method = place_file(self.entry(digest), dest, link=self.hardlink)
        if method == "link":
            # link() moved the inode's ctime: record the new stat (see "Verification").
            self._write_marker(digest, os.stat(self.entry(digest)))
        self._touch(digest)
        return method

    # --- markers ----------------------------------------------------------------------

    def _read_marker(self, digest: str) -> str | None:
        try:
            return self._marker(digest).read_text()
        except FileNotFoundError:
            return None

    def _write_marker(self, digest: str, st: os.stat_result) -> None:
        marker = self._marker(digest)
        tmp = temp_name(marker)
        tmp.write_text(_stat_key(st))
        os.replace(tmp, marker)
        self._touch(digest)  # writing it is a use too; and file mtimes are only jiffy-fine

    def _touch(self, digest: str) -> None:
        now = time.time_ns()
        with contextlib.suppress(FileNotFoundError):
            os.utime(self._marker(digest), ns=(now, now))

    def _drop(self, digest: str) -> None:
        for path in (self.entry(digest), self._marker(digest)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    # --- the bound (all under the space lock) -----------------------------------------

    def _make_room(self, need: int) -> bool:
        entries, used = self._scan()
        for _, digest, size in sorted(entries):
            if used + need <= self.max_bytes:
                break
            if self._evict(digest):
                used -= size
        return used + need <= self.max_bytes

    def _scan(self) -> tuple[list[tuple[int, str, int]], int]:
        """(last use, digest, size) of every entry, and the bytes held incl. reservations."""
        entries: dict[str, tuple[int, int]] = {}
        reserved = 0
        in_flight: set[str] = set()
        for folder in _subdirs(self.root / "sha256"):
            for item in os.scandir(folder):
                name = item.name
                digest = name if _DIGEST.fullmatch(name) else name[1:65]
                if not _DIGEST.fullmatch(digest):
                    continue
                try:
                    st = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    # Fetches rename temp files outside the space lock: count the entry
                    # it became (a dict, so one listed as well is not counted twice).
                    self._scan_entry(digest, entries)
                    continue
                if digest == name:
                    entries[digest] = (self._last_use(digest, st), st.st_size)
                elif self._download_alive(digest):
                    in_flight.add(digest)
                    reserved += st.st_size
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(item.path)  # its fetcher died
        self._remove_orphan_locks(entries.keys() | in_flight)
        listing = [(use, digest, size) for digest, (use, size) in entries.items()]
        return listing, reserved + sum(size for _, _, size in listing)

    def _scan_entry(self, digest: str, entries: dict[str, tuple[int, int]]) -> None:
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(self.entry(digest))
            entries[digest] = (self._last_use(digest, st), st.st_size)

    def _last_use(self, digest: str, st: os.stat_result) -> int:
        try:
            return os.stat(self._marker(digest)).st_mtime_ns
        except FileNotFoundError:
            return st.st_mtime_ns

    def _download_alive(self, digest: str) -> bool:
        path = self._lock(digest, "fetch")
        if not path.exists():
            return False
        fd = flock.try_acquire(path, create=False)
        if fd is None:
            return True  # held (or just replaced): count it, to stay under the bound
        flock.release(fd)
        return False

    def _evict(self, digest: str) -> bool:
        fd = flock.try_acquire(self._lock(digest, "pin"))
        if fd is None:
            return False  # being placed right now
        try:
            # Holding the pin exclusively means nobody is in the fetch section either.
            for path in (self.entry(digest), self._marker(digest), self._lock(digest, "fetch"),
                         self._lock(digest, "pin")):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        finally:
            flock.release(fd)
        log.info("evicted %s from the node cache", digest, extra=log_fields(sha256=digest))
        return True

    def _remove_orphan_locks(self, present: set[str]) -> None:
        """Lock files of digests with no entry (failed or bypassed fetches) would pile up.

        Each is unlinked only while held exclusively: anyone who opened it meanwhile
        notices the lost name after locking and starts over (see flock.acquire).
        """
        for folder in _subdirs(self.root / "locks"):
            for item in os.scandir(folder):
                digest, _, kind = item.name.partition(".")
                if kind not in ("pin", "fetch") or digest in present:
                    continue
                fd = flock.try_acquire(Path(item.path), create=False)
                if fd is not None:
                    try:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(item.path)
                    finally:
                        flock.release(fd)

    # --- locks ------------------------------------------------------------------------

    @asynccontextmanager
    async def _fetch_lock(self, digest: str) -> AsyncIterator[None]:
        async with self._fetching.hold(digest):
            fd = await flock.acquire(self._lock(digest, "fetch"), shared=False)
            try:
                yield
            finally:
                flock.release(fd)

    @asynccontextmanager
    async def _space_lock(self) -> AsyncIterator[None]:
        async with self._space:
            (self.root / "locks").mkdir(parents=True, exist_ok=True)
            fd = await flock.acquire(self.root / "locks" / "space.lock", shared=False)
            try:
                yield
            finally:
                flock.release(fd)


class _KeyedLocks:
    """asyncio locks by key, forgotten once unused so a long-lived process does not grow."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def _checked(digest: str) -> str:
    # The digest becomes a path: anything but 64 hex digits could walk out of the cache.
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"not a sha256 hex digest: {digest[:80]!r}")
    return digest


def _stat_key(st: os.stat_result) -> str:
    return f"{st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"


def _subdirs(path: Path) -> list[str]:
    try:
        return [item.path for item in os.scandir(path) if item.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
