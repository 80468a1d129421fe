"""forEach: items of a mapped task, its instances' names, and rendering an instance.

A task with `forEach` expands, when it becomes ready, into instances `task[0]`,
`task[1]`, ... one per item. Each instance is a task of its own for state, attempts,
retries, logs and memoization; its command, args and env see `{{ item }}` (and
`{{ item.field }}` for objects). Items come from a literal list, a list parameter, or a
JSON list an upstream task wrote as an output (read by the engine: this module does no I/O).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from helios import templating
from helios.dag.model import MAX_INSTANCES, ForEachFrom, ForEachParam, RunTask, Task
from helios.instances import instance_name, parse_instance

__all__ = ["ItemsError", "instance_name", "parse_instance", "render_task", "static_items"]

MAX_ITEMS_BYTES = 8 * 1024 * 1024  # an upstream list larger than this is refused
DEFERRED = ("item", "run.status", "run.failedTasks")


class ItemsError(ValueError):
    """The items cannot be had: not a list, too many, a missing parameter."""


def static_items(task: Task, params: dict[str, Any]) -> list[Any] | None:
    """The items known without I/O (a literal list or a parameter), None when they come
    from an upstream task."""
    spec = task.for_each
    if isinstance(spec, list):
        return check_items(list(spec), "forEach")
    if isinstance(spec, ForEachParam):
        if spec.param not in params:
            raise ItemsError(f"forEach: parameter {spec.param!r} has no value in this run")
        return check_items(params[spec.param], f"forEach: parameter {spec.param!r}")
    return None


def source_of(task: Task) -> ForEachFrom:
    assert isinstance(task.for_each, ForEachFrom)
    return task.for_each


def parse_items(raw: bytes, what: str) -> list[Any]:
    """An upstream output holding the list (JSON)."""
    if len(raw) > MAX_ITEMS_BYTES:
        raise ItemsError(f"{what}: {len(raw)} bytes; at most {MAX_ITEMS_BYTES} allowed")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ItemsError(f"{what} is not JSON: {exc}") from None
    return check_items(value, what)


def check_items(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ItemsError(f"{what} must be a JSON list, not {type(value).__name__}")
    if len(value) > MAX_INSTANCES:
        raise ItemsError(f"{what} has {len(value)} items; at most {MAX_INSTANCES} instances"
                         " per forEach task")
    return value


def render_task(task: Task, name: str, values: dict[str, Any]) -> RunTask:
    """The task as dispatched: `name` (an instance's `task[i]`), with the run-time
    references (`item`, `run.status`, `run.failedTasks`) in command, args and env
    rendered from `values`. Raises templating.TemplateError for an unknown one, or when
    the rendered task is not a valid one."""
    def one(text: str) -> str:
        return templating.render(text, values) if templating.has_template(text) else text

    doc = task.model_dump(by_alias=True, mode="json")
    # An instance is no map itself: without this, each of 10,000 dispatches would carry
    # the whole literal item list.
    doc.update(forEach=None, maxParallel=None)
    doc.update(name=name, command=[one(c) for c in task.command],
               args=[one(a) for a in task.args],
               env={k: one(v) for k, v in task.env.items()})
    try:
        return RunTask.model_validate(doc)
    except ValidationError as exc:
        # An item (an upstream task's JSON) holding NUL or a 100 KB string: the attempt
        # fails (TemplateError); escaping, it would be redelivered for ever.
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise templating.TemplateError(f"the rendered task is invalid: {errors[:300]}") from None


def needs_render(task: Task) -> bool:
    """Whether the task's strings hold any run-time reference."""
    texts = [*task.command, *task.args, *task.env.values()]
    return any(templating.has_template(t) for t in texts)
