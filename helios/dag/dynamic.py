"""Whole-document rules of the dynamic fields: forEach, maxParallel, when, onExit.

Returns `(field, reason)` pairs; `graph.check_graph` wraps them as its FieldErrors.
Runs after the graph itself is known to be sound (names unique, no cycle).
"""

from __future__ import annotations

from typing import Any

from helios.dag.conditions import ConditionError, references
from helios.dag.model import Dag, ForEachFrom, ForEachParam, Task


def check_dynamic(dag: Dag, index: dict[str, int]) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    n = len(dag.tasks)
    params = declared_params(dag)
    exits = {t.name for t in dag.on_exit}
    for i, task in enumerate(dag.all_tasks):
        loc = f"tasks[{i}]" if i < n else f"onExit[{i - n}]"
        if i < n:
            for dep in task.dependencies:
                if dep in exits:
                    errors.append((f"{loc}.depends_on", f"{dep!r} is an exit handler (onExit):"
                                   " it runs after every task, so nothing can wait for it"))
        if i >= n and isinstance(task.for_each, ForEachFrom):
            # Its items must be the same each time it runs again after a retry.
            errors.append((f"{loc}.forEach", "an exit handler maps over a list or a list "
                           "parameter, not over a task's output"))
        errors += _check_for_each(dag, index, loc, task, params)
        if task.when is not None:
            errors += _check_when(dag, loc, task, params, exit_handler=i >= n)
    return errors


def declared_params(dag: Dag) -> dict[str, str | None] | None:
    """Declared parameter name -> type, or None when the document model has no params."""
    raw: Any = getattr(dag, "params", None)
    if raw is None:
        return None
    items = raw.values() if isinstance(raw, dict) else raw
    out: dict[str, str | None] = {}
    for p in items:
        name = getattr(p, "name", None)
        if isinstance(name, str):
            out[name] = getattr(p, "type", None)
    if isinstance(raw, dict):
        out.update({k: getattr(v, "type", None) for k, v in raw.items() if k not in out})
    return out


def ancestors(dag: Dag, name: str) -> set[str]:
    seen: set[str] = set()
    stack = list(dag.task(name).dependencies)
    while stack:
        dep = stack.pop()
        if dep not in seen:
            seen.add(dep)
            stack.extend(dag.task(dep).dependencies)
    return seen


def _check_for_each(dag: Dag, index: dict[str, int], loc: str, task: Task,
                    params: dict[str, str | None] | None) -> list[tuple[str, str]]:
    spec = task.for_each
    if spec is None:
        if task.max_parallel is not None:
            return [(f"{loc}.maxParallel", "maxParallel applies to a forEach task only")]
        return []
    if isinstance(spec, ForEachParam):
        if params is None or spec.param not in params:
            return [(f"{loc}.forEach.param", f"unknown parameter {spec.param!r}")]
        kind = params[spec.param]
        if kind is not None and str(kind) not in ("list", "ParamType.LIST"):
            return [(f"{loc}.forEach.param", f"parameter {spec.param!r} is a {kind}, not a list")]
        return []
    if isinstance(spec, ForEachFrom):
        where = f"{loc}.forEach"
        if spec.from_task not in index:
            return [(f"{where}.fromTask", f"unknown task {spec.from_task!r}")]
        if spec.from_task == task.name:
            return [(f"{where}.fromTask", "a task cannot map over its own output")]
        producer = dag.task(spec.from_task)
        if producer.for_each is not None:
            return [(f"{where}.fromTask", f"{producer.name!r} is itself a forEach task")]
        if spec.artifact is not None and spec.artifact not in producer.outputs:
            return [(f"{where}.artifact", f"task {producer.name!r} declares no output"
                     f" {spec.artifact!r} (outputs: {', '.join(producer.outputs) or 'none'})")]
        if spec.artifact is None and len(producer.outputs) != 1:
            return [(f"{where}.artifact", f"task {producer.name!r} has"
                     f" {len(producer.outputs)} outputs; name the JSON list with 'artifact'")]
    return []


def _check_when(dag: Dag, loc: str, task: Task, params: dict[str, str | None] | None,
                *, exit_handler: bool) -> list[tuple[str, str]]:
    assert task.when is not None
    try:
        refs = references(task.when)
    except ConditionError as exc:
        return [(f"{loc}.when", str(exc))]
    errors: list[tuple[str, str]] = []
    for p in sorted(refs.params):
        if params is None or p not in params:
            errors.append((f"{loc}.when", f"unknown parameter {p!r}"))
    # An exit handler runs once every task is terminal: it may look at any of them.
    visible = {t.name for t in dag.tasks} | ancestors(dag, task.name) if exit_handler \
        else ancestors(dag, task.name)
    for t in sorted(refs.tasks):
        if t not in dag.by_name:
            errors.append((f"{loc}.when", f"unknown task {t!r}"))
        elif t not in visible:
            errors.append((f"{loc}.when", f"task {t!r} is not upstream of {task.name!r}"
                           " (add it to depends_on)"))
    if refs.run and not exit_handler:
        errors.append((f"{loc}.when", "run.status and run.failedTasks exist in onExit tasks only"))
    return errors
