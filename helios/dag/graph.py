"""Whole-document checks and graph helpers: dependencies, cycles, input resolution."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from helios.dag.dynamic import check_dynamic
from helios.dag.model import Dag, Task


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem, located by a JSON-path-like string such as `tasks[1].depends_on[0]`."""

    loc: str
    msg: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.loc, "reason": self.msg}


def check_graph(dag: Dag) -> list[FieldError]:
    """Errors that need the whole document; empty when the DAG is runnable."""
    errors: list[FieldError] = []
    index: dict[str, int] = {}
    every = dag.all_tasks  # the tasks, then the exit handlers: one namespace
    for i, task in enumerate(every):
        if task.name in index:
            errors.append(
                FieldError(
                    f"{task_loc(dag, i)}.name",
                    f"duplicate task name {task.name!r} (first used by"
                    f" {task_loc(dag, index[task.name])})",
                )
            )
        else:
            index[task.name] = i
    for i, task in enumerate(every):
        for j, dep in enumerate(task.depends_on):
            if dep not in index:
                errors.append(FieldError(f"{task_loc(dag, i)}.depends_on[{j}]", f"unknown task {dep!r}"))
            elif dep == task.name:
                errors.append(FieldError(f"{task_loc(dag, i)}.depends_on[{j}]", "a task cannot depend on itself"))
        for j in range(len(task.inputs)):
            errors.extend(_check_input(dag, index, i, j, task))
    if errors:
        return errors
    cycle = find_cycle(dag)
    if cycle:
        errors.append(FieldError("tasks", "dependency cycle: " + " -> ".join(cycle)))
        return errors
    return [FieldError(loc, msg) for loc, msg in check_dynamic(dag, index)]


def task_loc(dag: Dag, i: int) -> str:
    """`tasks[i]`, or `onExit[k]` for an exit handler (indexes over `dag.all_tasks`)."""
    n = len(dag.tasks)
    return f"tasks[{i}]" if i < n else f"onExit[{i - n}]"


def _check_input(dag: Dag, index: dict[str, int], i: int, j: int, task: Task) -> list[FieldError]:
    spec = task.inputs[j]
    loc = f"{task_loc(dag, i)}.inputs[{j}]"
    if spec.from_task not in index:
        return [FieldError(f"{loc}.fromTask", f"unknown task {spec.from_task!r}")]
    if spec.from_task == task.name:
        return [FieldError(f"{loc}.fromTask", "a task cannot read its own output")]
    producer = dag.all_tasks[index[spec.from_task]]
    if producer.for_each is not None and spec.artifact is None and producer.outputs:
        return []  # fan-in: every output of every instance, at /artifacts/{name}/{i}/{file}
    if spec.artifact is not None:
        if spec.artifact not in producer.outputs:
            return [
                FieldError(
                    f"{loc}.artifact",
                    f"task {producer.name!r} declares no output {spec.artifact!r}"
                    f" (outputs: {', '.join(producer.outputs) or 'none'})",
                )
            ]
        return []
    if not producer.outputs:
        return [FieldError(f"{loc}.fromTask", f"task {producer.name!r} declares no outputs")]
    if len(producer.outputs) > 1:
        return [
            FieldError(
                f"{loc}.artifact",
                f"task {producer.name!r} has several outputs ({', '.join(producer.outputs)});"
                " name the one to use with 'artifact'",
            )
        ]
    return []


def find_cycle(dag: Dag) -> list[str] | None:
    """One dependency cycle as a closed path (`a -> b -> a`), or None. Iterative DFS."""
    deps = {t.name: t.dependencies for t in dag.all_tasks}
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(deps, white)
    for root in deps:
        if colour[root] != white:
            continue
        path: list[str] = [root]
        stack: list[Iterator[str]] = [iter(deps[root])]
        colour[root] = grey
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                stack.pop()
                continue
            if colour.get(nxt) == grey:
                return [*path[path.index(nxt) :], nxt]
            if colour.get(nxt) == white:
                colour[nxt] = grey
                path.append(nxt)
                stack.append(iter(deps[nxt]))
    return None
