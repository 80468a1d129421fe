"""Template references in a DAG document: which ones may appear where, and rendering them.

`command`, `args` and `env` values of every task (and exit handler) may hold references
(`helios.templating`): `{{ params.NAME }}` of a declared parameter, `{{ run.id }}`,
`{{ run.logicalTime }}`. Some only have a value while the run goes on; they are left
for the scheduler to render: `{{ item }}` in a `forEach` task, `{{ run.status }}` and
`{{ run.failedTasks }}` in an `onExit` task. Anything else is refused at submit time,
located by its field path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from helios import templating
from helios.dag.graph import FieldError
from helios.dag.model import Dag, Task

RUN_PATHS = ("run.id", "run.logicalTime")
ITEM_PATHS = ("item",)
EXIT_PATHS = ("run.status", "run.failedTasks")
TEMPLATED_FIELDS = ("command", "args", "env")


def task_defer(task: Task | Mapping[str, Any], *, on_exit: bool) -> tuple[str, ...]:
    """The references of this task rendered at run time, not at submit time."""
    if isinstance(task, Mapping):
        mapped = task.get("forEach") is not None
    else:
        mapped = getattr(task, "for_each", None) is not None
    return (ITEM_PATHS if mapped else ()) + (EXIT_PATHS if on_exit else ())


def known_paths(dag: Dag) -> list[str]:
    return [f"params.{p.name}" for p in dag.params] + list(RUN_PATHS)


def _groups(dag: Dag) -> Iterator[tuple[str, list[Task], bool]]:
    yield "tasks", dag.tasks, False
    yield "onExit", list(getattr(dag, "on_exit", [])), True


def _strings(task: Task) -> Iterator[tuple[str, str]]:
    """(field path inside the task, text) of every templated string."""
    for j, part in enumerate(task.command):
        yield f"command[{j}]", part
    for j, part in enumerate(task.args):
        yield f"args[{j}]", part
    for key, value in task.env.items():
        yield f"env.{key}", value


def is_templated(dag: Dag) -> bool:
    """Whether the document declares parameters or holds any `{{` to render."""
    return bool(dag.params) or any(
        templating.has_template(text)
        for _, tasks, _ in _groups(dag) for task in tasks for _, text in _strings(task))


def check_templates(dag: Dag) -> list[FieldError]:
    """Duplicate parameter names and every reference that will have no value."""
    errors: list[FieldError] = []
    first: dict[str, int] = {}
    for i, param in enumerate(dag.params):
        if param.name in first:
            errors.append(FieldError(f"params[{i}].name", f"duplicate parameter {param.name!r} "
                                                         f"(first declared by params[{first[param.name]}])"))
        first.setdefault(param.name, i)
    known = known_paths(dag)
    for group, tasks, on_exit in _groups(dag):
        for i, task in enumerate(tasks):
            defer = task_defer(task, on_exit=on_exit)
            for loc, text in _strings(task):
                if not templating.has_template(text):
                    continue
                for problem in templating.check(text, known, defer=defer):
                    errors.append(FieldError(f"{group}[{i}].{loc}", problem))
    return errors


def render_document(document: dict[str, Any], values: Mapping[str, object]) -> dict[str, Any]:
    """A copy of a (valid, checked) document with command, args and env rendered
    partially: the references each task defers to run time stay in place, and every
    other `{{` is an escape (a literal one, or one in a value), so the scheduler's render
    at dispatch gives the final text of every task alike. Raises TemplateError."""
    out = dict(document)
    for group, on_exit in (("tasks", False), ("onExit", True)):
        if not isinstance(document.get(group), list):
            continue
        rendered = []
        for task in document[group]:
            defer = task_defer(task, on_exit=on_exit)
            new = dict(task)
            new["command"] = [templating.render(p, values, defer=defer, partial=True) for p in task["command"]]
            new["args"] = [templating.render(p, values, defer=defer, partial=True) for p in task.get("args", [])]
            new["env"] = {k: templating.render(v, values, defer=defer, partial=True)
                          for k, v in task.get("env", {}).items()}
            rendered.append(new)
        out[group] = rendered
    return out
