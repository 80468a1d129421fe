"""Run one real sandboxed attempt (bwrap, cgroups, disk caps) against the session's
real Redis and S3, and hand back its outcome and log lines."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from helios.artifacts.cache import NodeCache
from helios.dag.model import Task
from helios.definitions import new_run_id
from helios.executors.local.attempt import Attempt, AttemptContext, Outcome
from helios.executors.local.limits import HostLimits
from helios.executors.local.logsink import AttemptLog
from helios.messages import TaskDispatch
from helios.settings import LocalExecutorSettings, Settings


class RecordingLog(AttemptLog):
    """The real log sink, keeping a copy of each line for the test to read."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lines: list[str] = []

    def emit(self, line: str) -> None:
        self.lines.append(line)
        super().emit(line)


@dataclass
class Ran:
    outcome: Outcome
    lines: list[str]
    workspace: Path

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


async def run_task(settings: Settings, s3: Any, tmp: Path, script: str, *,
                   local: dict[str, Any] | None = None, keep: bool = False,
                   **task: Any) -> Ran:
    """One attempt of a bash `script` in the real sandbox, with `local` settings overrides."""
    opts = LocalExecutorSettings(work_dir=tmp / "work", **(local or {}))
    ctx = AttemptContext(
        s3=s3, bucket=settings.s3.bucket, cache=NodeCache(tmp / "cache", 10**9),
        work_dir=opts.work_dir, node="test", sandbox="bwrap", keep_workspace=keep,
        network=opts.network, limits=HostLimits.from_settings(opts),
    )
    spec = Task.model_validate({"name": "probe", "image": "debian:12",
                                "command": ["/bin/bash", "-c", script], **task})
    dag_id = new_run_id()
    dispatch = TaskDispatch.model_validate({
        "dagId": dag_id, "dagName": "security", "task": spec.model_dump(by_alias=True),
        "attempt": 1, "jobName": f"security-{dag_id}", "useCache": False,
        "dispatchedAt": time.time(),
    })
    redis = aioredis.Redis.from_url(settings.redis.url)
    try:
        logs = RecordingLog(redis, dag_id, spec.name)
        logs.start()
        attempt = Attempt(ctx, dispatch, logs)

        async def started() -> None:
            pass

        outcome = await attempt.run(started)
        await logs.close()
    finally:
        await redis.aclose()
    return Ran(outcome, logs.lines, attempt.workspace)
