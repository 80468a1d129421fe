"""Child processes that never outlive us: own session, parent-death signal, ordered stop."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the parent dies (even SIGKILL), so do we.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def spawn(
    name: str, argv: Sequence[str], *, log_file: Path, env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> asyncio.subprocess.Process:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    out = log_file.open("ab")
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    finally:
        out.close()
    log.debug("started %s pid=%s", name, proc.pid)
    return proc


async def stop(proc: asyncio.subprocess.Process, grace_s: float = 10.0) -> int | None:
    """SIGTERM, wait up to `grace_s`, then SIGKILL the whole process group."""
    if proc.returncode is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return await proc.wait()


async def wait_for_port(host: str, port: int, proc: asyncio.subprocess.Process, timeout_s: float) -> None:
    """Poll a TCP port until it accepts, failing fast if the process died."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = 0.01
    while True:
        if proc.returncode is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (TimeoutError, OSError):
            if loop.time() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s}s") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        else:
            writer.close()
            return
