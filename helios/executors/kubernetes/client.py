"""A thin, rate-limited client for the few Kubernetes calls Helios makes.

It drives the generated kubernetes-asyncio API with `_preload_content=False` and works
on plain dicts with the API's own field names (what `kubectl get -o json` shows), so
status codes (409, 410, 429) and watch lines are handled here, explicitly, never by the
library's `Watch` helper (which retries 410 behind the caller's back).

Every call waits for a token of one client-wide token bucket (`api_qps`), so a fan-out of
a thousand tasks turns into a steady stream of requests, and has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config

from helios.settings import KubernetesSettings


class KubeError(Exception):
    """A non-2xx answer (or a watch ERROR event) with the API's Status fields."""

    def __init__(self, code: int, reason: str = "", message: str = "",
                 retry_after: float | None = None):
        super().__init__(f"{code} {reason}: {message}".strip())
        self.code = code
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @classmethod
    def from_status(cls, code: int, body: dict[str, Any], retry_after: str | None = None
                    ) -> KubeError:
        details = body.get("details") or {}
        after = details.get("retryAfterSeconds") or retry_after
        return cls(int(body.get("code") or code), str(body.get("reason") or ""),
                   str(body.get("message") or ""), float(after) if after else None)


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `take` waits for one."""

    def __init__(self, rate: float, burst: int):
        self.rate = rate
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        # The lock makes waiters line up: each one sleeps only for its own token.
        async with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens < 1:
                await asyncio.sleep((1 - self.tokens) / self.rate)
                self.stamp = time.monotonic()
                self.tokens = 1.0
            self.tokens -= 1


@dataclass(frozen=True)
class Kind:
    """One watched resource: which generated method lists it."""

    api: str  # "batch" or "core"
    list_method: str
    name: str


LOG_LIMIT_BYTES = 16 * 1024 * 1024  # per container: a runaway log must not sink the watcher
JOBS = Kind("batch", "list_namespaced_job", "jobs")
PODS = Kind("core", "list_namespaced_pod", "pods")


async def _status_body(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = json.loads(await resp.read())
    except (ValueError, aiohttp.ClientError):
        return {}
    return body if isinstance(body, dict) else {}


class KubeApi:
    def __init__(self, api_client: client.ApiClient, namespace: str, qps: float,
                 call_timeout_s: float = 30.0):
        self.api_client = api_client
        self.namespace = namespace
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.bucket = TokenBucket(qps, burst=max(1, int(qps)))
        self.timeout = aiohttp.ClientTimeout(total=call_timeout_s, sock_connect=10)

    async def _call(self, api: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        """One request; the answer's JSON body, or KubeError. 404 raises too."""
        await self.bucket.take()
        resp = await getattr(api, method)(*args, _preload_content=False,
                                          _request_timeout=self.timeout, **kwargs)
        try:
            if resp.status >= 300:
                raise KubeError.from_status(resp.status, await _status_body(resp),
                                            resp.headers.get("Retry-After"))
            text = await resp.text()
            return json.loads(text) if resp.content_type == "application/json" else text
        finally:
            resp.release()

    # --- Jobs -----------------------------------------------------------------------

    async def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(self.batch, "create_namespaced_job", self.namespace, body)

    async def get_job(self, name: str) -> dict[str, Any] | None:
        try:
            return await self._call(self.batch, "read_namespaced_job", name, self.namespace)
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise

    async def delete_job(self, name: str, propagation: str = "Background") -> bool:
        """Delete a Job and (through the garbage collector) its pods; False if gone.

        The batch/v1 default would orphan the pods, hence the explicit policy."""
        try:
            await self._call(self.batch, "delete_namespaced_job", name, self.namespace,
                             propagation_policy=propagation)
        except KubeError as exc:
            if exc.code == 404:
                return False
            raise
        return True

    # --- Pods -----------------------------------------------------------------------

    async def get_pod(self, name: str) -> dict[str, Any] | None:
        try:
            return await self._call(self.core, "read_namespaced_pod", name, self.namespace)
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise

    async def read_log(self, pod: str, container: str, limit_bytes: int = LOG_LIMIT_BYTES
                       ) -> str | None:
        """A container's log (its first `limit_bytes`); None when the pod is gone or the
        container never ran."""
        try:
            text = await self._call(self.core, "read_namespaced_pod_log", pod,
                                    self.namespace, container=container,
                                    limit_bytes=limit_bytes)
        except KubeError as exc:
            if exc.code in (400, 404):  # 400: "container ... is waiting to start"
                return None
            raise
        return text if isinstance(text, str) else json.dumps(text)

    # --- list + watch ---------------------------------------------------------------

    def _api(self, kind: Kind) -> Any:
        return self.batch if kind.api == "batch" else self.core

    async def list(self, kind: Kind, selector: str) -> tuple[list[dict[str, Any]], str]:
        """Every matching object and the list's resourceVersion (to watch from)."""
        body = await self._call(self._api(kind), kind.list_method, self.namespace,
                                label_selector=selector)
        return list(body.get("items") or []), str(body["metadata"]["resourceVersion"])

    @contextlib.asynccontextmanager
    async def watch(self, kind: Kind, selector: str, resource_version: str,
                    server_timeout_s: int, silent_s: float
                    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """A watch stream from `resource_version`: yields each event as the API sends it
        (ERROR events included, as data). An HTTP error raises KubeError; no line for
        `silent_s` raises TimeoutError (a dead stream); the server's own timeout ends it."""
        await self.bucket.take()
        resp = await getattr(self._api(kind), kind.list_method)(
            self.namespace, label_selector=selector, watch=True,
            resource_version=resource_version, allow_watch_bookmarks=True,
            timeout_seconds=server_timeout_s, _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        try:
            if resp.status >= 300:
                raise KubeError.from_status(resp.status, await _status_body(resp),
                                            resp.headers.get("Retry-After"))
            yield self._events(resp, silent_s)
        finally:
            resp.close()

    @staticmethod
    async def _events(resp: aiohttp.ClientResponse, silent_s: float
                      ) -> AsyncIterator[dict[str, Any]]:
        while True:
            async with asyncio.timeout(silent_s):
                line = await resp.content.readline()
            if not line:
                return
            if line.strip():
                yield json.loads(line)


@contextlib.asynccontextmanager
async def open_api(settings: KubernetesSettings) -> AsyncIterator[KubeApi]:
    """In the cluster: the pod's ServiceAccount (token refreshed as it rotates);
    outside: a kubeconfig file."""
    cfg = client.Configuration()
    if settings.in_cluster:
        config.load_incluster_config(client_configuration=cfg)
    else:
        await config.load_kube_config(config_file=settings.kubeconfig, client_configuration=cfg,
                                      persist_config=False)
    # Two watches hold a connection each for good; log reads and deletes of many
    # finishing attempts need the rest (the library's default is 5 per CPU).
    cfg.connection_pool_maxsize = 32
    api_client = client.ApiClient(configuration=cfg)
    try:
        yield KubeApi(api_client, settings.namespace, settings.api_qps)
    finally:
        await api_client.close()
