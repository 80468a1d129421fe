"""`helios dev` as a separate process, as a user runs it, and the hands that kill it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from helios.auth_tokens import dev_headers
from helios.devstack.procs import free_port

HELIOS = [sys.executable, "-m", "helios.cli.main"]
T = TypeVar("T")
# How each child is recognised among `helios dev`'s direct children.
ROLES = {"api": "services.api", "scheduler": "services.scheduler",
         "watcher": "services.watcher", "metrics": "services.metrics",
         "nats": "nats-server", "valkey": "valkey-server", "s3": "weed"}


def argv_of(pid: int) -> list[str]:
    try:
        return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def children_of(ppid: int) -> dict[str, int]:
    """role -> pid of each live direct child of `ppid`."""
    found: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z" or int(fields[1]) != ppid:
            continue
        argv = argv_of(int(entry))
        for role, mark in ROLES.items():
            if mark in argv or (argv and os.path.basename(argv[0].split(" ")[0]) == mark):
                found[role] = int(entry)
    return found


def env_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout_s: float = 60.0,
                     what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; fail after a generous deadline."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = await probe()
            if value:
                return value
        except (aiohttp.ClientError, OSError, KeyError, TimeoutError) as exc:
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout_s}s (last error: {last!r})")


@dataclass
class Dev:
    data_dir: Path
    api_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    output: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)  # more `helios dev` options

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def headers(self) -> dict[str, str]:
        return dev_headers(self.data_dir)

    async def start(self, timeout_s: float = 90.0) -> None:
        self.output = []
        self.proc = await asyncio.create_subprocess_exec(
            *HELIOS, "dev", "--data-dir", str(self.data_dir), "--port", str(self.api_port),
            "--metrics-port", str(self.metrics_port), *self.args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )
        assert self.proc.stdout
        async with asyncio.timeout(timeout_s):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                assert line, "helios dev exited early:\n" + "".join(self.output) + self.log_tails()
                self.output.append(line)
                if "Helios is ready" in line:
                    break
        self._drain = asyncio.create_task(self._read_rest())

    def log_tails(self, lines: int = 15) -> str:
        """The end of each child's log: why a child died, in the failure's message."""
        tails = []
        for log in sorted((self.data_dir / "logs").glob("*.log")):
            with contextlib.suppress(OSError):
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                tails.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(tails)

    async def _read_rest(self) -> None:
        assert self.proc and self.proc.stdout
        while line := await self.proc.stdout.readline():
            self.output.append(line.decode())

    def children(self) -> dict[str, int]:
        assert self.proc
        return children_of(self.proc.pid)

    async def stop(self, timeout_s: float = 90.0) -> int:
        assert self.proc
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout_s)
        await asyncio.wait_for(self._drain, 10)
        return code

    async def kill_all(self) -> None:
        """`kill -9` of `helios dev` and every child, at once."""
        assert self.proc
        pids = [self.proc.pid, *self.children().values()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 30)
        for pid in pids[1:]:
            await eventually(lambda p=pid: gone(p), 30, f"pid {pid} gone")  # type: ignore[misc]

    async def close(self) -> None:
        if self.proc and self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.stop(60)
        if self.proc and self.proc.returncode is None:
            await self.kill_all()

    async def status(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(f"{self.api}/api/v1/system/status", headers=self.headers,
                            timeout=aiohttp.ClientTimeout(total=10)) as resp:
            assert resp.status == 200
            return dict(await resp.json())

    async def get(self, http: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
        async with http.get(f"{self.api}/api/v1{path}", headers=self.headers,
                            timeout=aiohttp.ClientTimeout(total=10)) as resp:
            return resp.status, await resp.json(content_type=None)


async def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"
