"""The Kubernetes backend: one batch/v1 Job per task attempt.

- `jobs.py` builds the Job (pure); `waiter.py` is the pod's upload step;
- `executor.py` creates and deletes Jobs (the scheduler's side);
- `source.py` watches Jobs and pods and reports each attempt (the watcher's side), on
  `watch.py` (list+watch), `status.py` (what the objects say), `podlogs.py` (the logs),
  `ledger.py` (once-only across restarts) and `workqueue.py` (keys, not payloads);
- `client.py` is the rate-limited API client both sides share.

Imports stay lazy here: `python -m helios.executors.kubernetes.waiter` runs in every task
pod and must not pay for the Kubernetes client.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from helios.executors.kubernetes.executor import KubernetesExecutor
    from helios.executors.kubernetes.source import KubernetesTaskSource
    from helios.settings import Settings


@contextlib.asynccontextmanager
async def open_kubernetes_executor(settings: Settings) -> AsyncIterator[KubernetesExecutor]:
    from helios.executors.kubernetes.client import open_api
    from helios.executors.kubernetes.executor import KubernetesExecutor

    async with open_api(settings.k8s) as api:
        executor = KubernetesExecutor(api, settings)
        try:
            yield executor
        finally:
            await executor.close()


@contextlib.asynccontextmanager
async def open_kubernetes_source(
    settings: Settings, redis: aioredis.Redis, s3: Any
) -> AsyncIterator[KubernetesTaskSource]:
    from helios.executors.kubernetes.client import open_api
    from helios.executors.kubernetes.source import KubernetesTaskSource

    async with open_api(settings.k8s) as api:
        yield KubernetesTaskSource(api, settings, redis, s3)
