"""Session-wide real servers (NATS with JetStream, Valkey, SeaweedFS S3) on free ports.

Each test that uses `settings` gets a clean slate: Redis flushed, JetStream streams
deleted, so durable consumers and dedupe windows from one test never leak into another.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import nats
import pytest
import redis.asyncio as aioredis
from nats.js.errors import NotFoundError

from helios.auth_tokens import new_token
from helios.devstack.servers import Endpoints, backing_servers
from helios.s3 import ensure_bucket, open_s3
from helios.settings import (
    AuthSettings,
    CacheSettings,
    LocalExecutorSettings,
    NatsSettings,
    RedisSettings,
    S3Settings,
    SchedulerSettings,
    Settings,
)


@pytest.fixture(scope="session")
async def endpoints(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Endpoints]:
    async with backing_servers(tmp_path_factory.mktemp("stack")) as ep:
        yield ep


# The API needs tokens: every test's API accepts these (fresh per session), and the
# shared `http` client sends the write token unless a test sets its own header.
WRITE_TOKEN = new_token(24)
READ_TOKEN = new_token(24)


def write_tokens_file(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def auth_settings(tmp: Path) -> AuthSettings:
    tokens = write_tokens_file(tmp / "auth" / "tokens", f"write {WRITE_TOKEN}", f"read {READ_TOKEN}")
    return AuthSettings(tokens_file=tokens)


def make_settings(ep: Endpoints, tmp: Path, **overrides: object) -> Settings:
    fields: dict[str, object] = {
        "auth": auth_settings(tmp),
        # Generous bounds: the suite runs several workers on two cores, where a JetStream
        # file-store request can take seconds; the defaults stay tight for production.
        "nats": NatsSettings(url=ep.nats_url, request_timeout_s=30.0),
        "redis": RedisSettings(url=ep.redis_url, timeout_s=30.0),
        "s3": S3Settings(
            endpoint_url=ep.s3_url, bucket=ep.bucket,
            access_key_id=ep.access_key, secret_access_key=ep.secret_key,  # type: ignore[arg-type]
        ),
        "cache": CacheSettings(dir=tmp / "cache"),
        "local": LocalExecutorSettings(work_dir=tmp / "work"),
        "scheduler": SchedulerSettings(retry_backoff_s=0.05),
        "log_format": "text",
        "drain_timeout_s": 5.0,
    }
    fields.update(overrides)
    return Settings(**fields)  # type: ignore[arg-type]


async def reset_backends(ep: Endpoints) -> None:
    r = aioredis.Redis.from_url(ep.redis_url)
    try:
        await r.flushall()
    finally:
        await r.aclose()
    nc = await nats.connect(ep.nats_url)
    try:
        js = nc.jetstream(timeout=30.0)
        for name in await js.streams_info():
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(str(name.config.name))
    finally:
        await nc.close()


@pytest.fixture
async def settings(endpoints: Endpoints, tmp_path: Path) -> Settings:
    await reset_backends(endpoints)
    s = make_settings(endpoints, tmp_path)
    async with open_s3(s.s3) as s3:
        await ensure_bucket(s3, s.s3.bucket)
    return s


KEPT_ENV = {"HELIOS_PORT_CLAIMS_DIR"}  # set by pytest_configure below


@pytest.fixture(autouse=True, scope="session")
def _quiet_env() -> None:
    # Tests configure everything explicitly; a developer's HELIOS_* must not leak in.
    for key in [k for k in os.environ if k.startswith("HELIOS_") and k not in KEPT_ENV]:
        del os.environ[key]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for talking to the services over real sockets (with the write token)."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {WRITE_TOKEN}"}) as session:
        yield session


# Test files that share one stack in a fixed order (tests/web: one browser, one stack,
# the empty runs list first) stay on one xdist worker; the rest spread over the workers.
SERIAL_GROUPS = {"tests/web/": "web"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for prefix, group in SERIAL_GROUPS.items():
            if item.nodeid.startswith(prefix):
                item.add_marker(pytest.mark.xdist_group(group))


PORTS_DIR = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Free ports are claimed in one folder shared by every xdist worker of this run and
    the `helios dev` processes they start (they inherit the variable): two processes never
    pick the same port before either binds it. The controller (or a run without xdist)
    makes the folder before any worker starts, and removes it at the end."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        if not os.environ.get("HELIOS_PORT_CLAIMS_DIR"):  # not inherited: share by run id
            folder = Path(tempfile.gettempdir()) / (
                "helios-test-ports-" + os.environ.get("PYTEST_XDIST_TESTRUNUID", "run"))
            folder.mkdir(mode=0o700, exist_ok=True)
            os.environ["HELIOS_PORT_CLAIMS_DIR"] = str(folder)
        return
    folder = Path(tempfile.mkdtemp(prefix="helios-test-ports-"))
    config.stash[PORTS_DIR] = folder
    os.environ["HELIOS_PORT_CLAIMS_DIR"] = str(folder)


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(PORTS_DIR, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
