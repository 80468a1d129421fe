"""Child processes that never outlive us: own session, parent-death signal, ordered stop;
plus the port checks that keep `helios dev` from trusting another process's listener."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_TCP_LISTEN = "0A"


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the parent dies (even SIGKILL), so do we.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def ephemeral_low() -> int:
    """The first port the kernel may give an outgoing connection."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports this process has handed out (or been told are taken), with when: two picks before
# the first bind must not return the same port. A claim lapses after CLAIM_S, by when its
# server listens (and `port_taken` sees it) or was never started. With
# HELIOS_PORT_CLAIMS_DIR (the test session sets one for all its workers and the
# `helios dev` processes they start), claims are files there: seen by every process.
_claims: dict[int, float] = {}
CLAIM_S = 300.0


def _claim_file(port: int, *, take_fresh: bool) -> bool:
    """Claim `port` in the shared folder; False when another process holds a fresh claim
    (unless `take_fresh`: a port given to us, e.g. `--port`, is ours whatever)."""
    folder = os.environ.get("HELIOS_PORT_CLAIMS_DIR")
    if not folder:
        return True
    path = Path(folder) / str(port)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        with contextlib.suppress(OSError):
            if take_fresh or time.time() - path.stat().st_mtime > CLAIM_S:
                os.utime(path)
                return True
        return False
    except OSError:
        return True  # no usable folder: the claims of this process still hold


def claim(*ports: int) -> None:
    """Ports chosen elsewhere (`--port`, a test's pick) that our own picks must avoid."""
    now = time.monotonic()
    for port in ports:
        _claims[port] = now
        _claim_file(port, take_fresh=True)


def claim_free(port: int) -> bool:
    """Claim a port this process found free, unless another process claimed it first."""
    if not _claim_file(port, take_fresh=False):
        return False
    _claims[port] = time.monotonic()
    return True


def claimed() -> frozenset[int]:
    now = time.monotonic()
    for port in [p for p, at in _claims.items() if now - at > CLAIM_S]:
        del _claims[port]
    return frozenset(_claims)


def port_range() -> tuple[int, int]:
    """Where `free_port` picks: `HELIOS_PORT_RANGE` ("lo-hi"), else from 10000 up to
    the kernel's ephemeral range."""
    raw = os.environ.get("HELIOS_PORT_RANGE", "")
    with contextlib.suppress(ValueError):
        lo, hi = (int(part) for part in raw.split("-", 1))
        if 1024 <= lo < hi <= 65536:
            return lo, hi
    return 10000, ephemeral_low()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on and no process of ours has claimed, chosen below the
    kernel's ephemeral range when it can be: a port the kernel hands out (bind to 0)
    can be taken by any outgoing connection between this call and the server's bind,
    which under load made servers fail to start."""
    lo, hi = port_range()
    if hi - lo > 100:
        taken = claimed()
        for _ in range(200):
            port = random.randrange(lo, hi)
            if port not in taken and not port_taken(host, port) and claim_free(port):
                return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
    claim(port)
    return port


def port_taken(host: str, port: int) -> bool:
    """True when something already listens on `host:port` (or on the wildcard address).

    SO_REUSEADDR as the servers use it: a port left in TIME_WAIT by our own previous run
    is free, a live listener is not."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes of every TCP listener on `port` (IPv4 and IPv6), from /proc/net."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) > 9 and cols[3] == _TCP_LISTEN and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    found.add(cols[9])
    return found


def listens(pid: int, port: int) -> bool:
    """Does process `pid` itself hold the listening socket of `port`? A probe that only
    connects cannot tell our child from another stack answering on the same port."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return True
    return False


async def spawn(
    name: str, argv: Sequence[str], *, log_file: Path, env: dict[str, str] | None = None,
    cwd: Path | None = None, pass_fds: tuple[int, ...] = (),
) -> asyncio.subprocess.Process:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    out = log_file.open("ab")
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
            preexec_fn=_die_with_parent, pass_fds=pass_fds,
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
    """Wait until `proc` itself listens on `port` and accepts, failing fast if it died."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = 0.01
    while True:
        if proc.returncode is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        if listens(proc.pid, port):
            with contextlib.suppress(TimeoutError, OSError):
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
                writer.close()
                return
        if loop.time() > deadline:
            raise TimeoutError(f"pid {proc.pid} does not listen on {host}:{port} after {timeout_s}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
