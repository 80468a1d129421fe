"""Services as real child processes, so a test can `kill -9` one and start it again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from helios.devstack.procs import free_port, spawn
from helios.devstack.servers import Endpoints
from helios.s3 import open_s3
from helios.settings import Settings


def service_env(ep: Endpoints, settings: Settings, **extra: str) -> dict[str, str]:
    """The HELIOS_* environment that gives a child process the test's settings."""
    return {
        **ep.env(),
        "HELIOS_CACHE_DIR": str(settings.cache.dir),
        "HELIOS_LOCAL_WORK_DIR": str(settings.local.work_dir),
        "HELIOS_LOCAL_SANDBOX": settings.local.sandbox,
        "HELIOS_SCHED_RETRY_BACKOFF_S": str(settings.scheduler.retry_backoff_s),
        "HELIOS_LOG_FORMAT": "text",
        "HELIOS_DRAIN_TIMEOUT_S": "5",
        "HELIOS_HTTP_HOST": "127.0.0.1",
        **extra,
    }


@dataclass
class Child:
    """One service (`python -m services.<name>`) that can be killed and started again."""

    name: str
    env: dict[str, str]
    log_dir: Path
    proc: asyncio.subprocess.Process | None = None
    port: int = 0
    starts: list[float] = field(default_factory=list)

    async def start(self, *, wait_ready: bool = True, timeout_s: float = 90.0) -> None:
        self.port = free_port()
        self.starts.append(asyncio.get_running_loop().time())
        self.proc = await spawn(
            self.name, [sys.executable, "-m", f"services.{self.name}"],
            log_file=self.log_dir / f"{self.name}.log",
            env={**self.env, "HELIOS_HTTP_PORT": str(self.port)},
            cwd=Path(__file__).resolve().parents[2],
        )
        if wait_ready:
            await self.ready(timeout_s)

    async def ready(self, timeout_s: float = 60.0) -> None:
        """Poll /readyz (a child process has no event to wait on)."""
        async with aiohttp.ClientSession() as http, asyncio.timeout(timeout_s):
            while True:
                assert self.proc is not None and self.proc.returncode is None, \
                    f"{self.name} exited; see {self.log_dir / (self.name + '.log')}"
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{self.port}/readyz") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    async def kill(self) -> None:
        """`kill -9`: no drain, no goodbye; what it held is left to the bus."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 30)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)  # a stopped child cannot take SIGTERM
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            await self.kill()


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float,
                     every_s: float = 0.05) -> None:
    """Poll an outside server until `check()` (no event to wait on across processes)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await check():
                return
            await asyncio.sleep(every_s)


async def archived(settings: Settings, key: str, timeout_s: float = 30.0) -> bytes:
    """The archiver uploads a moment after the report: wait for the object."""
    body: list[bytes] = []
    async with open_s3(settings.s3) as s3:
        async def stored() -> bool:
            try:
                obj = await s3.get_object(Bucket=settings.s3.bucket, Key=key)
            except s3.exceptions.NoSuchKey:
                return False
            async with obj["Body"] as stream:
                body.append(await stream.read())
            return True

        await eventually(stored, timeout_s, every_s=0.2)
    return body[0]
