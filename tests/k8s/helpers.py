"""Small builders shared by the Kubernetes tests: dispatches, a recording sink, and a
task source running in the background."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from helios.dag.model import Task
from helios.executors.base import job_name
from helios.executors.kubernetes.client import KubeApi, open_api
from helios.executors.kubernetes.source import KubernetesTaskSource
from helios.executors.kubernetes.watch import WatchPolicy
from helios.messages import InputArtifact, TaskDispatch, TaskReport
from helios.settings import Settings

FAST_WATCH = WatchPolicy(backoff_s=(0.05, 0.1, 0.2), silent_s=2.0, server_timeout_s=30)


def dispatch(task: dict[str, Any], dag_id: str = "run-1", attempt: int = 1,
             inputs: list[InputArtifact] | None = None, use_cache: bool = True,
             dag_name: str = "demo") -> TaskDispatch:
    t = Task.model_validate({"image": "ubuntu:latest", **task})
    return TaskDispatch(dag_id=dag_id, dag_name=dag_name, task=t, attempt=attempt,
                        job_name=job_name(dag_id, t.name, attempt), use_cache=use_cache,
                        inputs=inputs or [], dispatched_at=time.time())


class Recorder:
    """A ReportSink that keeps every report and lets a test wait for one."""

    def __init__(self) -> None:
        self.reports: list[TaskReport] = []
        self._changed = asyncio.Event()

    async def __call__(self, report: TaskReport) -> None:
        self.reports.append(report)
        self._changed.set()

    async def wait_for(self, pred: Callable[[TaskReport], bool], timeout: float = 20.0
                       ) -> TaskReport:
        async with asyncio.timeout(timeout):
            while True:
                for report in self.reports:
                    if pred(report):
                        return report
                self._changed.clear()
                await self._changed.wait()

    async def terminal(self, task: str, attempt: int = 1, timeout: float = 20.0) -> TaskReport:
        return await self.wait_for(lambda r: r.task == task and r.attempt == attempt
                                   and r.phase != "running", timeout)

    def phases(self, task: str, attempt: int = 1) -> list[str]:
        return [r.phase for r in self.reports if r.task == task and r.attempt == attempt]


@contextlib.asynccontextmanager
async def running_source(settings: Settings, redis: Any, s3: Any, sink: Recorder,
                         policy: WatchPolicy = FAST_WATCH
                         ) -> AsyncIterator[KubernetesTaskSource]:
    async with open_api(settings.k8s) as api:
        source = KubernetesTaskSource(api, settings, redis, s3, policy=policy, workers=4)
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(source.run(sink, stop, ready), name="test-source")
        try:
            async with asyncio.timeout(10):
                waiter = asyncio.ensure_future(ready.wait())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            if task.done():
                task.result()
                raise RuntimeError("the source ended before it was ready")
            yield source
        finally:
            stop.set()
            async with asyncio.timeout(15):
                await task


@contextlib.asynccontextmanager
async def kube_api(settings: Settings) -> AsyncIterator[KubeApi]:
    async with open_api(settings.k8s) as api:
        yield api
