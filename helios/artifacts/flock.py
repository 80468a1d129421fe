"""`fcntl.flock` for asyncio: cross-process locks on lock files that may be deleted.

A blocking wait runs in its own short-lived thread, never in the shared default pool:
with N waiters parked in a small pool, the lock holder could not get a worker thread to
finish its download, and everything would deadlock.

Lock files are removed when their cache entry is evicted, so a waiter may end up
holding a lock on a file that no longer has a name. After acquiring, `acquire` checks
that the path still names the locked inode, and starts over if not (the classic
lock-file-with-unlink protocol).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
from pathlib import Path


async def acquire(path: Path, *, shared: bool) -> int:
    """Lock `path` (created if missing); returns the open fd; `release(fd)` unlocks."""
    op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    while True:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
        except BlockingIOError:
            fut = _wait_in_thread(fd, op)
            try:
                await fut
            except BaseException:
                # A cancelled wait leaves `fd` to the thread, which closes it when flock
                # returns; a finished one (we were cancelled just after) leaves it to us.
                if not fut.cancelled():
                    os.close(fd)
                raise
        except BaseException:
            os.close(fd)
            raise
        if _names(path, fd):
            return fd
        os.close(fd)


def try_acquire(path: Path, *, shared: bool = False, create: bool = True) -> int | None:
    """Non-blocking `acquire`: the fd, or None when someone else holds the lock."""
    flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if not _names(path, fd):
        os.close(fd)
        return None
    return fd


def release(fd: int) -> None:
    # Closing the only descriptor of the open file description drops its flock.
    os.close(fd)


def _names(path: Path, fd: int) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _wait_in_thread(fd: int, op: int) -> asyncio.Future[None]:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def settle(err: OSError | None) -> None:  # runs on the loop, so no race with cancel()
        if fut.cancelled():
            os.close(fd)  # nobody wants the lock any more
        elif err is not None:
            fut.set_exception(err)
        else:
            fut.set_result(None)

    def wait() -> None:
        err: OSError | None = None
        try:
            fcntl.flock(fd, op)
        except OSError as exc:
            err = exc
        try:
            loop.call_soon_threadsafe(settle, err)
        except RuntimeError:  # the loop is gone; so is the waiter
            with contextlib.suppress(OSError):
                os.close(fd)

    threading.Thread(target=wait, name=f"flock-{fd}", daemon=True).start()
    return fut
