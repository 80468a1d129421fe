"""The seams every execution backend implements.

Scheduler side (`Executor`): launch one attempt, idempotently, and cancel a run.
Watcher side (`TaskSource`): observe attempts and hand a `TaskReport` to the sink for
every phase change (running, succeeded, failed), with the attempt's log lines archived
under `dag:{dagId}:task:{name}:logs` before the terminal report is handed over.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import Protocol

from helios.messages import TaskDispatch, TaskReport

ReportSink = Callable[[TaskReport], Awaitable[None]]


class Executor(Protocol):
    async def launch(self, dispatch: TaskDispatch) -> None:
        """Start the attempt unless it was already started (a redelivery is a no-op)."""

    async def cancel_run(self, dag_id: str) -> None:
        """Stop every attempt of the run that is still queued or running."""

    async def close(self) -> None: ...


class TaskSource(Protocol):
    async def run(self, sink: ReportSink, stop: asyncio.Event, ready: asyncio.Event) -> None:
        """Observe attempts until `stop`; set `ready` once caught up with the backend."""


_UNSAFE = re.compile(r"[^a-z0-9-]+")


def job_name(dag_id: str, task: str, attempt: int) -> str:
    """Deterministic, DNS-1123, at most 63 chars, collision-safe: the idempotency key.

    Readable parts are truncated; a digest of the full (dagId, task, attempt) keeps two
    long names that share a prefix apart.
    """
    digest = hashlib.sha256(f"{dag_id}\0{task}\0{attempt}".encode()).hexdigest()[:10]
    run = _UNSAFE.sub("-", dag_id.lower())[:8].strip("-")
    name = _UNSAFE.sub("-", task.lower())[:30].strip("-")
    return f"h-{run}-{name}-{attempt}-{digest}"[:63].rstrip("-")
