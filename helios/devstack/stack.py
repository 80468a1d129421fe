"""`helios dev`: the backing servers, the bucket, then the four services as processes,
every one of them supervised (see supervise.py).

The services talk to each other only over NATS, Redis and S3, exactly as in a cluster;
each is `python -m services.<name>` with its settings in HELIOS_* variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp
import redis.asyncio as aioredis

from helios.auth_tokens import dev_auth_env
from helios.devstack.cluster import ClusterTarget, open_s3_relay
from helios.devstack.procs import claim, free_port, port_taken
from helios.devstack.relay import Relay
from helios.devstack.servers import Endpoints, Ports, backing_servers
from helios.devstack.status import StatusPublisher
from helios.devstack.supervise import (
    HOST,
    ChildSpec,
    CrashLoop,
    Process,
    ReadyCheck,
    RestartPolicy,
    Supervisor,
)
from helios.runtime import guard
from helios.s3 import ensure_bucket, open_s3
from helios.settings import S3Settings

log = logging.getLogger(__name__)

SERVICES = ("metrics", "scheduler", "watcher", "api")
# Stop order: the API first (stop taking work), then the rest, then the servers.
STOP_ORDER = ["api", "watcher", "scheduler", "metrics", "s3", "valkey", "nats"]
T = TypeVar("T")


class PortInUse(RuntimeError):
    """A port `helios dev` needs is taken; the message is the one line to print."""


class DataDirBusy(RuntimeError):
    """Another `helios dev` runs on this data dir: two Valkeys on one append-only file
    would corrupt it. The lock dies with its holder, even on `kill -9`."""


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[int]:
    """Hold the data dir's lock; yields its descriptor, which the children inherit so the
    lock outlives a `kill -9` of `helios dev` until its servers have exited too."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "helios-dev.lock"
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise DataDirBusy(f"{data_dir} is in use by another helios dev (pid {holder}) "
                              "or by its servers still stopping") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield handle.fileno()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class DevStack:
    api_url: str
    metrics_url: str
    endpoints: Endpoints
    data_dir: Path
    ready_s: float
    supervisor: Supervisor
    cluster: ClusterTarget | None = None
    relay: Relay | None = None  # the S3 gateway as the cluster's pods reach it


def check_ports(named: dict[str, int]) -> None:
    """Refuse to start when a port we must listen on is already someone's."""
    for name, port in named.items():
        if port and port_taken(HOST, port):
            raise PortInUse(f"port {port} ({name}) is already in use on {HOST}; stop what "
                            f"listens there or pick another port")


async def create_bucket(ep: Endpoints, timeout_s: float = 30.0) -> None:
    """SeaweedFS accepts connections a moment before its S3 gateway answers. Creating
    the bucket is idempotent: on a restart it simply finds it there."""
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


def service_ready(name: str, url: str, timeout_s: float) -> ReadyCheck:
    """Ready = our own child answers `/readyz` 200 as service `name`. The supervisor has
    already checked that the child itself holds the port, so no other process (another
    stack on the same port) can pass this for it."""
    async def check(proc: Process) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"{name} exited with code {proc.returncode} during startup")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                    async with session.get(f"{url}/readyz",
                                           timeout=aiohttp.ClientTimeout(total=2)) as r:
                        body = await r.json(content_type=None)
                        if r.status == 200 and body.get("service") == name:
                            return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready after {timeout_s}s")
                await asyncio.sleep(0.05)

    return check


async def _unless_failed(sup: Supervisor, aw: Awaitable[T]) -> T:
    """Await `aw`, unless the supervisor gives up on a child first."""
    work = asyncio.ensure_future(aw)
    failed = asyncio.ensure_future(sup.failed.wait())
    try:
        await asyncio.wait({work, failed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        failed.cancel()
    if not work.done():
        work.cancel()
        with contextlib.suppress(BaseException):
            await work
        raise CrashLoop(sup.failure or "a child failed during startup")
    return work.result()


@contextlib.asynccontextmanager
async def dev_stack(data_dir: Path, *, api_port: int = 8080, metrics_port: int = 8081,
                    ports: Ports | None = None, extra_env: dict[str, str] | None = None,
                    timeout_s: float = 60.0, policy: RestartPolicy | None = None,
                    cluster: ClusterTarget | None = None) -> AsyncIterator[DevStack]:
    """The stack; with `cluster`, the tasks run there as Jobs (see cluster.py)."""
    started = time.monotonic()
    data_dir = data_dir.resolve()
    explicit = ports or Ports()
    check_ports({"api": api_port, "metrics": metrics_port, "nats": explicit.nats,
                 "redis": explicit.redis, "s3": explicit.s3,
                 **{f"seaweedfs #{i}": p for i, p in enumerate(explicit.weed)}})
    claim(api_port, metrics_port)  # the servers' ports, picked next, must not be these
    sup = Supervisor(policy or RestartPolicy(ready_timeout_s=timeout_s))
    publisher: asyncio.Task[None] | None = None
    redis: aioredis.Redis | None = None
    held = contextlib.ExitStack()
    lock_fd = held.enter_context(data_dir_lock(data_dir))  # before anything touches the data
    try:
        async with backing_servers(data_dir, explicit, timeout_s, wait_for_s3=False,
                                   supervisor=sup, pass_fds=(lock_fd,)) as ep, \
                contextlib.AsyncExitStack() as scope:
            relay, executor_env = None, {"HELIOS_EXECUTOR": "local",
                                         "HELIOS_LOCAL_WORK_DIR": str(data_dir / "work"),
                                         "HELIOS_LOCAL_SECRETS_DIR": str(data_dir / "secrets")}
            (data_dir / "secrets").mkdir(mode=0o700, exist_ok=True)  # envFromSecrets files
            if cluster is not None:
                relay = await open_s3_relay(scope, cluster, ep.s3_url, data_dir)
                executor_env = cluster.env(relay.url)
            redis = aioredis.Redis.from_url(ep.redis_url, socket_timeout=5)
            status = StatusPublisher(redis, sup)
            await status.clear()
            publisher = guard(status.run(), "supervisor-status")  # a crash is logged
            metrics_url = f"http://{HOST}:{metrics_port}"
            env = {
                **ep.env(),
                **executor_env,
                "HELIOS_CACHE_DIR": str(data_dir / "cache"),
                "HELIOS_METRICS_URL": metrics_url,
                "HELIOS_HTTP_HOST": HOST,
                **dev_auth_env(data_dir),  # the API's tokens: <data-dir>/auth/tokens, made once
                **(extra_env or {}),
            }
            port_of = {"api": api_port, "metrics": metrics_port}
            specs = []
            for name in SERVICES:
                port = port_of.get(name) or free_port()
                url = f"http://{HOST}:{port}"
                specs.append(ChildSpec(
                    name, "service", [sys.executable, "-m", f"services.{name}"],
                    data_dir / "logs" / f"{name}.log",
                    env={**env, "HELIOS_HTTP_PORT": str(port)}, port=port,
                    ready=service_ready(name, url, timeout_s), grace_s=30.0,
                    pass_fds=(lock_fd,),
                ))
            # The services start while SeaweedFS is still coming up; the bucket is made then.

            async def services() -> None:
                if cluster is not None:
                    from helios.devstack.kube_prep import prepare_cluster

                    # Before any service: a scheduler resuming runs must not create Jobs
                    # whose pods would read the previous start's keys.
                    await prepare_cluster(cluster, ep.access_key, ep.secret_key)
                await asyncio.gather(*(sup.start(spec) for spec in specs))

            await _unless_failed(sup, asyncio.gather(create_bucket(ep), services()))
            yield DevStack(f"http://{HOST}:{api_port}", metrics_url, ep, data_dir,
                           time.monotonic() - started, sup, cluster, relay)
    finally:
        if publisher is not None:
            publisher.cancel()
        await sup.stop(STOP_ORDER)
        if redis is not None:
            with contextlib.suppress(Exception):
                await redis.aclose()
        held.close()
