"""What the dynamic features need read back into a loaded `RunView`: the run's parameter
values (for `when` and `forEach: {param}`), and the exit code and result of the tasks
`when` conditions name. One round trip, and none for a DAG that uses neither."""

from __future__ import annotations

import orjson
import redis.asyncio as aioredis

from helios import keys
from helios.dag.conditions import references
from helios.dag.model import Dag, ForEachParam
from services.scheduler.runview import RunView


def _needs(dag: Dag) -> tuple[bool, tuple[str, ...]]:
    """(whether the run's params are needed, the tasks whose exitCode/result are).
    Cheap: `references` is cached per condition text."""
    params = any(isinstance(t.for_each, ForEachParam) for t in dag.all_tasks)
    named: set[str] = set()
    for t in dag.all_tasks:
        if t.when:
            refs = references(t.when)
            params |= bool(refs.params)
            named |= refs.tasks
    return params, tuple(sorted(n for n in named if n in dag.by_name))


async def load_extras(redis: aioredis.Redis, dag_id: str, view: RunView) -> None:
    want_params, named = _needs(view.dag)
    if not want_params and not named:
        return
    async with redis.pipeline(transaction=False) as pipe:
        if want_params:
            pipe.hget(keys.submission(dag_id), "params")
        for n in named:
            pipe.hmget(keys.task_detail(dag_id, n), "exitCode", "result")
        replies = await pipe.execute()
    if want_params:
        raw = replies.pop(0)
        view.params = orjson.loads(raw) if raw else {}
    for n, (code, result) in zip(named, replies, strict=True):
        tv = view.tasks[n]
        tv.exit_code = orjson.loads(code) if code else None
        tv.result = orjson.loads(result) if result else None
