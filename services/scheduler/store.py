"""The scheduler's view of Redis: load a run's state, store a plan's effects."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import orjson
import redis.asyncio as aioredis

from helios import keys, runs_index
from helios.dag.model import Dag
from helios.definitions import Definitions
from helios.instances import entry_names, read_items
from helios.messages import InputArtifact, OutputArtifact
from helios.runs_view import encode_detail
from helios.states import RunState, TaskState
from services.scheduler.decide import RunView, TaskView, Transition
from services.scheduler.extras import load_extras


class UnknownRun(LookupError):
    pass


class RunStore:
    def __init__(self, redis: aioredis.Redis, dag_cache_size: int = 512):
        self.redis = redis
        self._definitions = Definitions(redis, dag_cache_size)
        self._dag_cache_size = dag_cache_size
        self._views: OrderedDict[str, tuple[RunView, dict[str, str]]] = OrderedDict()
        self._sent: OrderedDict[str, None] = OrderedDict()  # runs with an empty outbox

    async def dag(self, dag_id: str) -> Dag:
        dag = await self._definitions.get(dag_id)
        if dag is None:
            raise UnknownRun(dag_id)
        return dag

    async def load(self, dag_id: str, results_of: frozenset[str] = frozenset()
                   ) -> tuple[RunView, dict[str, str]]:
        """The run's current state, and its run hash (dagName, useCache, ...); with
        `results_of`, read afresh with those forEach tasks' instance results.

        The scheduler is the only writer of task states, so the state it stored last is
        kept in memory and handed out again; `forget()` drops it whenever an evaluation
        fails part-way, and the next load re-reads Redis."""
        cached = self._views.get(dag_id)
        if cached is not None and not results_of:
            self._views.move_to_end(dag_id)
            return cached
        view_run = await self._read(dag_id, results_of)
        self._views[dag_id] = view_run
        if len(self._views) > self._dag_cache_size:
            self._views.popitem(last=False)
        return view_run

    def forget(self, dag_id: str) -> None:
        self._views.pop(dag_id, None)

    async def _read(self, dag_id: str, results_of: frozenset[str] = frozenset()
                    ) -> tuple[RunView, dict[str, str]]:
        dag = await self.dag(dag_id)
        items = await read_items(self.redis, dag_id, dag)  # forEach tasks' instances
        names = entry_names(dag, items)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.run(dag_id))
            pipe.mget([keys.task_status(dag_id, n) for n in names])
            pipe.mget([keys.task_attempts(dag_id, n) for n in names])
            run, states, attempts = await pipe.execute()
        tasks = {
            n: TaskView(TaskState(s) if s else TaskState.PENDING, int(a or 0))
            for n, s, a in zip(names, states, attempts, strict=True)
        }
        if not run:
            # The api creates the run hash before it publishes the submission: a run
            # without one was deleted by retention (or never existed). Nothing to do.
            raise UnknownRun(dag_id)
        state = RunState(run["state"]) if run.get("state") else RunState.RUNNING
        view = RunView(dag, state, tasks, int(run.get("generation", 0)), "startedAt" in run,
                       items=items)
        await load_extras(self.redis, dag_id, view, results_of)
        return view, run

    async def outputs_of(self, dag_id: str, tasks: set[str]) -> dict[str, dict[str, OutputArtifact]]:
        names = sorted(tasks)
        if not names:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for n in names:
                pipe.hgetall(keys.task_outputs(dag_id, n))
            rows = await pipe.execute()
        return {
            n: {f: OutputArtifact.model_validate_json(v) for f, v in row.items()}
            for n, row in zip(names, rows, strict=True)
        }

    async def resolve_inputs(self, dag: Dag, dag_id: str, task: str,
                             outputs: dict[str, dict[str, OutputArtifact]]) -> list[InputArtifact]:
        spec = dag.task(task)
        resolved = []
        for item in spec.inputs:
            artifact = item.artifact or dag.task(item.from_task).outputs[0]
            out = outputs.get(item.from_task, {}).get(artifact)
            if out is None:
                raise LookupError(f"{item.from_task!r} recorded no output {artifact!r}")
            resolved.append(InputArtifact(
                name=item.name, from_task=item.from_task, artifact=artifact,
                key=out.key, sha256=out.sha256, size=out.size,
            ))
        return resolved

    async def memo_key(self, dag_id: str, task: str) -> tuple[str | None, dict[str, str]]:
        """The fingerprint recorded when a memoizable task was queued."""
        key, parts = await self.redis.hmget(keys.task_detail(dag_id, task), "memoKey", "memoParts")
        return (orjson.loads(key) if key else None), (orjson.loads(parts) if parts else {})

    async def set_detail(self, dag_id: str, task: str, fields: dict[str, Any]) -> None:
        await self.redis.hset(keys.task_detail(dag_id, task), mapping=encode_detail(fields))

    async def pending_effects(self, dag_id: str) -> list[dict[str, Any]]:
        """An interrupted evaluation's effects. Skipped for runs whose outbox this process
        emptied itself (the common case: no round trip)."""
        if dag_id in self._sent:
            return []
        raw = await self.redis.get(keys.outbox(dag_id))
        return orjson.loads(raw) if raw else []

    async def effects_sent(self, dag_id: str) -> None:
        await self.redis.delete(keys.outbox(dag_id))
        self._sent[dag_id] = None
        if len(self._sent) > self._dag_cache_size:
            self._sent.popitem(last=False)

    async def store(self, dag_id: str, transitions: list[Transition],
                    run_fields: dict[str, Any], outputs: dict[str, list[OutputArtifact]],
                    effects: list[dict[str, Any]], listed: tuple[str, float] | None = None,
                    items: dict[str, list[Any]] | None = None) -> None:
        """Write a plan's state and its outbox in one MULTI/EXEC: readers never see half
        a plan, and the effects survive a crash before they are sent. `listed`: the run's
        (dagName, submittedAt), to move it in the runs list index with its state."""
        async with self.redis.pipeline(transaction=True) as pipe:
            if effects:
                self._sent.pop(dag_id, None)
                pipe.set(keys.outbox(dag_id), orjson.dumps(effects))
            for t in transitions:
                pipe.set(keys.task_status(dag_id, t.task), t.state.value)
                pipe.set(keys.task_attempts(dag_id, t.task), t.attempt)
                detail = {**t.detail, "state": t.state.value, "attempt": t.attempt,
                          "updatedAt": time.time()}
                fields = encode_detail(detail)
                if t.state in (TaskState.PENDING, TaskState.QUEUED):
                    pipe.delete(keys.task_detail(dag_id, t.task))  # a new attempt starts clean
                pipe.hset(keys.task_detail(dag_id, t.task), mapping=fields)
            for task, values in (items or {}).items():  # forEach tasks expanded now
                pipe.set(keys.task_items(dag_id, task), orjson.dumps(values))
            for task, files in outputs.items():
                if files:
                    pipe.hset(keys.task_outputs(dag_id, task),
                              mapping={o.name: o.model_dump_json() for o in files})
            plain: dict[Any, str] = {k: _plain(v) for k, v in run_fields.items()}
            if plain:
                pipe.hset(keys.run(dag_id), mapping=plain)
            _index_ended(pipe, dag_id, run_fields)
            if listed is not None and run_fields.get("state"):
                runs_index.index_state(pipe, dag_id, *listed, RunState(run_fields["state"]))
            await pipe.execute()
        cached = self._views.get(dag_id)
        if cached is not None:
            cached[1].update(plain)


def _index_ended(pipe: Any, dag_id: str, run_fields: dict[str, Any]) -> None:
    """Keep `runs:ended` in step with the run state, in the same MULTI: retention reads
    the oldest ended runs from it and never sees a run that a retry made RUNNING again."""
    state = run_fields.get("state")
    if state is None:
        return
    if RunState(state).terminal and run_fields.get("endedAt"):
        pipe.zadd(keys.RUNS_ENDED, {dag_id: float(run_fields["endedAt"])})
    else:
        pipe.zrem(keys.RUNS_ENDED, dag_id)


def _plain(value: Any) -> str:
    """Run-hash fields are plain strings; the task detail hash holds JSON values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
