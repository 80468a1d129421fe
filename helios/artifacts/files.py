"""File primitives of the artifact steps: hashing, atomic verified writes, cheap placement.

Everything here blocks except `in_thread` and `AtomicWriter`'s async methods, which push
the blocking work (write, hash, fsync) to a worker thread in 1 MiB batches so the event
loop keeps serving the other downloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import shutil
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from types import TracebackType
from typing import Literal, ParamSpec, TypeVar

from helios.artifacts.errors import ArtifactError, DigestMismatch

CHUNK = 1 << 20
FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
Method = Literal["link", "reflink", "copy"]
P = ParamSpec("P")
T = TypeVar("T")


async def in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`asyncio.to_thread` that, when cancelled, still waits for the thread to finish.

    A cancelled `to_thread` leaves its thread running: the caller's cleanup would then
    close a file the thread still writes to, or release a lock it still works under.
    """
    job = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await asyncio.wait([job])
        if not job.cancelled():
            job.exception()  # retrieved: the cancellation is what propagates
        raise


def sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def temp_name(final: Path, suffix: str = ".tmp") -> Path:
    """A hidden sibling of `final`: same folder, so the final rename is atomic."""
    return final.with_name(f".{final.name}.{secrets.token_hex(6)}{suffix}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicWriter:
    """Write a stream to `final` so that only a complete, verified file ever appears there.

    Bytes go to `tmp` (same folder), hashed on the way; `commit()` checks size and sha256
    against the expected ones, optionally fsyncs, sets `mode` and renames. Leaving the
    `async with` block without a commit removes the temp file. With `reserve`, the temp
    file is created at its final size up front, so a cache scan counts it (see cache.py).
    """

    def __init__(
        self, final: Path, expected: tuple[str, int], what: str, *,
        tmp: Path | None = None, mode: int = 0o644, durable: bool = False,
    ):
        self.final = final
        self.tmp = tmp or temp_name(final)
        self.expected = expected
        self.what = what
        self.mode = mode
        self.durable = durable
        self._hash = hashlib.sha256()
        self._size = 0
        self._buf = bytearray()
        self._fd = -1
        self._done = False

    def open(self, *, reserve: bool = False) -> None:
        self._fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        if reserve:
            os.ftruncate(self._fd, self.expected[1])

    async def __aenter__(self) -> AtomicWriter:
        if self._fd < 0:
            self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()

    async def write(self, data: bytes) -> None:
        if self._size + len(self._buf) + len(data) > self.expected[1]:
            # Stop early: never write past the recorded size (it is what the cache reserved).
            raise ArtifactError(
                f"{self.what}: received more than the recorded {self.expected[1]} bytes"
            )
        self._buf += data
        if len(self._buf) >= CHUNK:
            await self._flush()

    async def _flush(self) -> None:
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            await in_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        self._hash.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._size += len(data)

    async def commit(self) -> None:
        await self._flush()
        actual = (self._hash.hexdigest(), self._size)
        if actual != self.expected:
            raise DigestMismatch(self.what, self.expected, actual)
        await in_thread(self._finish)
        self._done = True

    def _finish(self) -> None:
        # The reserved length may exceed what was written only if the sizes differ,
        # which commit() has ruled out; truncate anyway so the file is exactly the bytes.
        os.ftruncate(self._fd, self._size)
        os.fchmod(self._fd, self.mode)
        if self.durable:
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        os.replace(self.tmp, self.final)
        if self.durable:
            fsync_dir(self.final.parent)

    def discard(self) -> None:
        """Remove the temp file unless committed (idempotent)."""
        if self._done:
            return
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


async def write_stream(
    final: Path, fetch: Callable[[], AsyncGenerator[bytes, None]], expected: tuple[str, int],
    what: str, *, mode: int = 0o644,
) -> None:
    """Stream `fetch()` into `final` through an `AtomicWriter` (verified, all or nothing)."""
    async with AtomicWriter(final, expected, what, mode=mode) as writer, contextlib.aclosing(
        fetch()
    ) as chunks:
        async for chunk in chunks:
            await writer.write(chunk)
        await writer.commit()


def place_file(src: Path, dest: Path, *, link: bool) -> Method:
    """Put a copy of `src` at `dest` (replacing it) as cheaply as allowed; never partially.

    `link` allows a hard link (shares the inode: only safe when the reader cannot write
    it, see cache.py). Otherwise a reflink (a new inode sharing blocks copy-on-write) and,
    where the filesystem cannot, a copy (`copy_file_range` keeps it in the kernel).
    """
    tmp = temp_name(dest)
    try:
        if link:
            try:
                os.link(src, tmp)
                method: Method = "link"
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                method = _clone_or_copy(src, tmp)
        else:
            method = _clone_or_copy(src, tmp)
        os.replace(tmp, dest)
    finally:
        # rename() of two links to one inode is a no-op that leaves `tmp` behind.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return method


def _clone_or_copy(src: Path, tmp: Path) -> Method:
    with open(src, "rb") as fin, open(tmp, "xb") as fout:
        os.fchmod(fout.fileno(), 0o644)  # the workspace copy is the task's own file
        try:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
            return "reflink"
        except OSError:
            pass  # EOPNOTSUPP (ext4), EXDEV, EINVAL...: fall through to a copy
        try:
            remaining = os.fstat(fin.fileno()).st_size
            while remaining > 0:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), min(remaining, 1 << 30))
                if n == 0:
                    break
                remaining -= n
        except OSError:
            fin.seek(0)
            fout.seek(0)
            fout.truncate()
            shutil.copyfileobj(fin, fout, CHUNK)
    return "copy"
