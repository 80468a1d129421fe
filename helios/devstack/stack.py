"""`helios dev`: the backing servers, the bucket, then the four services as processes.

The services talk to each other only over NATS, Redis and S3, exactly as in a cluster;
each is `python -m services.<name>` with its settings in HELIOS_* variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from helios.auth_tokens import dev_auth_env
from helios.devstack.procs import free_port, spawn, stop
from helios.devstack.servers import Endpoints, Ports, backing_servers
from helios.s3 import ensure_bucket, open_s3
from helios.settings import S3Settings

log = logging.getLogger(__name__)

SERVICES = ("metrics", "scheduler", "watcher", "api")


@dataclass
class DevStack:
    api_url: str
    metrics_url: str
    endpoints: Endpoints
    data_dir: Path
    ready_s: float


async def create_bucket(ep: Endpoints, timeout_s: float = 20.0) -> None:
    """SeaweedFS accepts connections a moment before its S3 gateway answers."""
    settings = S3Settings(endpoint_url=ep.s3_url, bucket=ep.bucket,
                          access_key_id=ep.access_key, secret_access_key=ep.secret_key)  # type: ignore[arg-type]
    deadline = time.monotonic() + timeout_s
    async with open_s3(settings) as s3:
        while True:
            try:
                await ensure_bucket(s3, ep.bucket)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def wait_ready(session: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process,
                     timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.returncode is not None:
            raise RuntimeError(f"{url} exited with code {proc.returncode} during startup")
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with session.get(f"{url}/readyz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                if r.status == 200:
                    return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready after {timeout_s}s")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def dev_stack(data_dir: Path, *, api_port: int = 8080, metrics_port: int = 8081,
                    ports: Ports | None = None, extra_env: dict[str, str] | None = None,
                    timeout_s: float = 60.0) -> AsyncIterator[DevStack]:
    started = time.monotonic()
    data_dir = data_dir.resolve()
    async with backing_servers(data_dir, ports, wait_for_s3=False) as ep:
        # The services start while SeaweedFS is still coming up; the bucket is made then.
        bucket = asyncio.ensure_future(create_bucket(ep))
        metrics_url = f"http://127.0.0.1:{metrics_port}"
        env = {
            **ep.env(),
            "HELIOS_EXECUTOR": "local",
            "HELIOS_CACHE_DIR": str(data_dir / "cache"),
            "HELIOS_LOCAL_WORK_DIR": str(data_dir / "work"),
            "HELIOS_METRICS_URL": metrics_url,
            "HELIOS_HTTP_HOST": "127.0.0.1",
            **dev_auth_env(data_dir),  # the API's tokens: <data-dir>/auth/tokens, made once
            **(extra_env or {}),
        }
        port_of = {"api": api_port, "metrics": metrics_port}
        procs: dict[str, asyncio.subprocess.Process] = {}
        urls: dict[str, str] = {}
        try:
            for name in SERVICES:
                port = port_of.get(name) or free_port()
                urls[name] = f"http://127.0.0.1:{port}"
                procs[name] = await spawn(
                    name, [sys.executable, "-m", f"services.{name}"],
                    log_file=data_dir / "logs" / f"{name}.log",
                    env={**env, "HELIOS_HTTP_PORT": str(port)},
                )
            async with aiohttp.ClientSession() as session:
                await asyncio.gather(bucket, *(
                    wait_ready(session, urls[n], procs[n], timeout_s) for n in SERVICES))
            yield DevStack(urls["api"], metrics_url, ep, data_dir, time.monotonic() - started)
        finally:
            bucket.cancel()
            # API first (stop taking work), then the rest; each drains on SIGTERM.
            for name in reversed(SERVICES):
                if name in procs:
                    code = await stop(procs[name], grace_s=30.0)
                    if code not in (0, None):
                        log.warning("%s exited with %s; see %s", name, code,
                                    data_dir / "logs" / f"{name}.log")
