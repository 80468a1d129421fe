"""What the watcher already did for an attempt, in Redis, so a restart does it once.

One set per attempt holds the steps done: `running` and `terminal` (reports handed to
the sink) and `logs` (lines appended to the task's log list). The log lines and their
marker are written in one MULTI/EXEC guarded by WATCH, so a watcher that restarts after
a crash appends an attempt's lines exactly once. Reports are marked after the sink
took them: a crash in between re-sends one, which the sink's `Nats-Msg-Id` drops.

The key lives under `dag:{dagId}:` so it goes with the run's other keys.
TODO(lead): move `ledger_key` into `helios.keys` (the one module that names keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from helios import keys, tasklogs

Step = Literal["running", "terminal", "logs"]
TTL_S = 14 * 24 * 3600  # longer than any run stays in the metrics window


def ledger_key(dag_id: str, task: str, attempt: int) -> str:
    return keys.attempt_watch(dag_id, task, attempt)


class Ledger:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    async def done(self, dag_id: str, task: str, attempt: int, step: Step) -> bool:
        return bool(await self.redis.sismember(ledger_key(dag_id, task, attempt), step))

    async def mark(self, dag_id: str, task: str, attempt: int, step: Step) -> None:
        key = ledger_key(dag_id, task, attempt)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, step)
            pipe.expire(key, TTL_S)
            await pipe.execute()

    async def append_logs_once(self, dag_id: str, task: str, attempt: int,
                               lines: Sequence[str], cut: tasklogs.LogCut | None = None) -> bool:
        """Append the attempt's lines (and, if they were cut, the truncation line and its
        record) unless done before; True if this call did it."""
        key = ledger_key(dag_id, task, attempt)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    if await pipe.sismember(key, "logs"):
                        return False
                    pipe.multi()
                    await tasklogs.append_lines(pipe, dag_id, task, lines)  # type: ignore[arg-type]
                    if cut is not None:
                        tasklogs.record_cut(pipe, dag_id, task, cut)
                    pipe.sadd(key, "logs")
                    pipe.expire(key, TTL_S)
                    await pipe.execute()
                    return True
                except WatchError:
                    continue  # another writer touched the marker: look again
