"""The typed reader of the scheduler's run and task records (see `helios.keys` for owners).

The scheduler owns `dag:{id}:run` and the per-task status, attempts and detail keys;
every other service (the api's status route, the local runner deciding whether an
attempt is still wanted) reads them through this module and nothing else. The detail
hash holds one JSON value per field; `encode_detail` is the writer's half of that format
so the two cannot drift apart. A value that does not decode is an error, never silently
passed through as text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from helios import keys
from helios.messages import CacheStats, Timings
from helios.states import RunState, TaskState
from helios.store import as_text


class RecordError(ValueError):
    """A stored record does not have the documented shape."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class TaskDetail(_Record):
    """The detail hash of a task's current attempt (fields the scheduler documents)."""

    node: str | None = None
    exit_code: int | None = Field(default=None, alias="exitCode")
    reason: str | None = None
    message: str | None = None
    memoized: bool = False
    memo_reason: str | None = Field(default=None, alias="memoReason")
    retry_of: int | None = Field(default=None, alias="retryOf")
    lost_attempts: int = Field(default=0, alias="lostAttempts")  # re-run, no retry spent
    timings: Timings | None = None
    cache: CacheStats | None = None
    updated_at: float | None = Field(default=None, alias="updatedAt")
    result: JsonValue = None  # the JSON the attempt wrote to /artifacts/.result
    instances: int | None = None  # a forEach task: how many instances it expanded into


class TaskRecord(_Record):
    name: str
    state: TaskState = TaskState.PENDING
    attempts: int = 0
    detail: TaskDetail = TaskDetail()


class RunRecord(_Record):
    dag_id: str
    dag_name: str | None = None
    state: RunState = RunState.RUNNING
    use_cache: bool = True
    generation: int = 0
    submitted_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    tasks: dict[str, TaskRecord] = {}

    @property
    def duration_ms(self) -> int | None:
        if self.started_at and self.ended_at:
            return round((self.ended_at - self.started_at) * 1000)
        return None


def encode_detail(fields: Mapping[str, Any]) -> dict[Any, str]:
    """The writer's half: one JSON value per hash field (keys typed loosely for redis-py's
    invariant `Mapping` key type)."""
    return {k: orjson.dumps(v).decode() for k, v in fields.items()}


def decode_detail(where: str, raw: Mapping[str, str]) -> TaskDetail:
    try:
        values = {k: orjson.loads(v) for k, v in raw.items()}
        return TaskDetail.model_validate(values)
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise RecordError(f"{where}: {exc}") from exc


def _num(value: str | None) -> float | None:
    return float(value) if value else None


def decode_run(dag_id: str, raw: Mapping[str, str], tasks: dict[str, TaskRecord]) -> RunRecord:
    try:
        return RunRecord(
            dag_id=dag_id,
            dag_name=raw.get("dagName"),
            state=RunState(raw["state"]) if raw.get("state") else RunState.RUNNING,
            use_cache=raw.get("useCache", "true") == "true",
            generation=int(raw.get("generation") or 0),
            submitted_at=_num(raw.get("submittedAt")),
            started_at=_num(raw.get("startedAt")),
            ended_at=_num(raw.get("endedAt")),
            tasks=tasks,
        )
    except (ValueError, ValidationError) as exc:
        raise RecordError(f"{keys.run(dag_id)}: {exc}") from exc


class RunHead(_Record):
    """What cancel, retry and the live feed decide on: the run's state and generation."""

    state: RunState
    generation: int


async def read_head(redis: aioredis.Redis, dag_id: str) -> RunHead | None:
    """The run's state and generation in one round trip; None when there is no run."""
    state, generation = await redis.hmget(keys.run(dag_id), ["state", "generation"])
    if state is None:
        return None
    try:
        return RunHead(state=RunState(as_text(state)), generation=int(as_text(generation or "0")))
    except ValueError as exc:
        raise RecordError(f"{keys.run(dag_id)}: {exc}") from exc



async def run_exists(redis: aioredis.Redis, dag_id: str) -> bool:
    """False once retention deleted the run (or it never existed)."""
    return bool(await redis.exists(keys.run(dag_id)))


async def read_run(redis: aioredis.Redis, dag_id: str, tasks: Sequence[str], *,
                   detail: bool = True) -> RunRecord | None:
    """The run and the named tasks in one round trip; None when the run does not exist
    (never submitted, or deleted by retention). `detail=False` skips the detail hashes
    (state and attempts only: what a gate needs)."""
    names = list(tasks)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.run(dag_id))
        if names:
            pipe.mget([keys.task_status(dag_id, n) for n in names])
            pipe.mget([keys.task_attempts(dag_id, n) for n in names])
            if detail:
                for n in names:
                    pipe.hgetall(keys.task_detail(dag_id, n))
        replies = await pipe.execute()
    run = replies[0]
    if not run:
        return None
    records: dict[str, TaskRecord] = {}
    if names:
        states, attempts = replies[1], replies[2]
        details = replies[3:] if detail else [{}] * len(names)
        for name, state, attempt, raw in zip(names, states, attempts, details, strict=True):
            try:
                task_state = TaskState(state) if state else TaskState.PENDING
                count = int(attempt or 0)
            except ValueError as exc:
                raise RecordError(f"{keys.task_status(dag_id, name)}: {exc}") from exc
            records[name] = TaskRecord(
                name=name, state=task_state, attempts=count,
                detail=decode_detail(keys.task_detail(dag_id, name), raw) if raw else TaskDetail(),
            )
    return decode_run(dag_id, run, records)
