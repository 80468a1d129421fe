"""What the dynamic features need read back into a loaded `RunView`: the run's parameter
values (for `when` and `forEach: {param}`), and the exit code and result of the tasks
`when` conditions name. One round trip, and none for a DAG that uses neither.

A forEach task's instances' results are read only when asked (`results_of`): when a
condition is about to read them and the view does not hold them all (mapped_results.NeedResults),
not on every report of a large map."""

from __future__ import annotations

import orjson
import redis.asyncio as aioredis

from helios import keys
from helios.dag.conditions import references
from helios.dag.model import Dag, ForEachParam
from helios.instances import instance_name
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


async def load_extras(redis: aioredis.Redis, dag_id: str, view: RunView,
                      results_of: frozenset[str] = frozenset()) -> None:
    want_params, named = _needs(view.dag)
    mapped = sorted(n for n in results_of if n in view.items)
    if not want_params and not named and not mapped:
        return
    async with redis.pipeline(transaction=False) as pipe:
        if want_params:
            pipe.hget(keys.submission(dag_id), "params")
        for n in named:
            pipe.hmget(keys.task_detail(dag_id, n), "exitCode", "result")
        for n in mapped:
            for i in range(len(view.items[n])):
                pipe.hget(keys.task_detail(dag_id, instance_name(n, i)), "result")
        replies = await pipe.execute()
    if want_params:
        raw = replies.pop(0)
        view.params = orjson.loads(raw) if raw else {}
    for n, (code, result) in zip(named, replies[:len(named)], strict=True):
        tv = view.tasks[n]
        tv.exit_code = orjson.loads(code) if code else None
        tv.result = orjson.loads(result) if result else None
        tv.result_known = True
    rest = iter(replies[len(named):])
    for n in mapped:
        for i in range(len(view.items[n])):
            raw = next(rest)
            tv = view.tasks[instance_name(n, i)]
            tv.result, tv.result_known = (orjson.loads(raw) if raw else None), True
    view.results_read = frozenset(mapped)
