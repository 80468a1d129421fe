"""The engine's side of forEach and exit handlers: the I/O the pure decisions leave to it.

- Expansion from an upstream output: `decide` marks the forEach task QUEUED and names
  it in `Plan.expand`; `expand_all` reads the JSON list from the object store and feeds
  it back (`decide.on_items`), until nothing is left to expand.
- Dispatch: an instance `task[i]` is sent as a `RunTask` of that name, with `{{ item }}`
  rendered from its item; an exit handler gets `{{ run.status }}` and
  `{{ run.failedTasks }}`; a reference that has no value fails the attempt at once.
- Fan-in: an input from a forEach task places every instance's outputs at
  `/artifacts/{name}/{i}/{file}`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from helios.dag.model import Dag, RunTask, Task
from helios.instances import instance_name, parse_instance
from helios.logs import log_fields
from helios.messages import InputArtifact, OutputArtifact, TaskDispatch, TaskReport
from helios.states import RunState
from services.scheduler import decide
from services.scheduler.decide import Plan, Policy, RunView
from services.scheduler.expand import (
    MAX_ITEMS_BYTES,
    ItemsError,
    needs_render,
    parse_items,
    render_task,
    source_of,
)

log = logging.getLogger(__name__)

ReadObject = Callable[[str], Awaitable[bytes]]
Outputs = dict[str, dict[str, OutputArtifact]]


async def expand_all(dag_id: str, view: RunView, plan: Plan, policy: Policy,
                     outputs_of: Callable[[str], Awaitable[dict[str, OutputArtifact]]],
                     read_object: ReadObject | None, merge: Callable[[Plan, Plan], None],
                     run_changes: list[RunState]) -> None:
    """Read the items of every forEach task waiting for them and expand it. An object
    that cannot be read for a transient reason raises (the batch is retried)."""
    while plan.expand:
        name = plan.expand.pop(0)
        items, error = None, None
        try:
            items = await _read_items(view.dag.task(name), outputs_of, read_object)
        except ItemsError as exc:
            error = str(exc)
            log.info("forEach items of %s unusable: %s", name, error,
                     extra=log_fields(dagId=dag_id, task=name))
        step = decide.on_items(view, name, items, error, policy)
        if step.run_state is not None:
            run_changes.append(step.run_state)
        merge(plan, step)


def outputs_reader(store: Any, dag_id: str, fresh: dict[str, list[OutputArtifact]]
                   ) -> Callable[[str], Awaitable[dict[str, OutputArtifact]]]:
    """A task's recorded outputs: this batch's own reports first, else the store's."""
    async def read(task: str) -> dict[str, OutputArtifact]:
        if task in fresh:
            return {o.name: o for o in fresh[task]}
        return dict((await store.outputs_of(dag_id, {task})).get(task, {}))
    return read


async def _read_items(task: Task, outputs_of: Callable[[str], Awaitable[dict[str, OutputArtifact]]],
                      read_object: ReadObject | None) -> list[Any]:
    spec = source_of(task)
    files = await outputs_of(spec.from_task)
    artifact = spec.artifact or next(iter(files), None)
    what = f"forEach: output {artifact!r} of {spec.from_task!r}"
    out = files.get(artifact) if artifact else None
    if out is None:
        raise ItemsError(f"{what} was not recorded")
    if read_object is None:
        raise ItemsError(f"{what}: this scheduler has no object store to read it from")
    if out.size > MAX_ITEMS_BYTES:
        raise ItemsError(f"{what}: {out.size} bytes; at most {MAX_ITEMS_BYTES} allowed")
    return parse_items(await read_object(out.key), what)


def dispatched_task(view: RunView, name: str) -> Task | RunTask:
    """The task to send for entry `name`: rendered when it holds run-time references.
    Raises templating.TemplateError when one has no value."""
    spec = view.spec(name)
    inst = parse_instance(name)
    values: dict[str, Any] = {}
    if inst is not None:
        values["item"] = view.items[inst[0]][inst[1]]
    if any(t.name == (inst[0] if inst else name) for t in view.dag.on_exit):
        values.update(decide.run_values(view))
    if inst is None and not needs_render(spec):
        return spec
    return render_task(spec, name, values)


def instance_fields(name: str) -> dict[str, Any]:
    """`map_of` and `index` of an instance's events (nothing for a plain task)."""
    inst = parse_instance(name)
    return {"map_of": inst[0], "index": inst[1]} if inst else {}


def producers(view: RunView, names: list[str]) -> set[str]:
    """The entries whose outputs the launched tasks read (every instance of a forEach
    producer: fan-in)."""
    out: set[str] = set()
    for name in names:
        for spec in view.spec(name).inputs:
            items = view.items.get(spec.from_task)
            if items is None:
                out.add(spec.from_task)
            else:
                out.update(instance_name(spec.from_task, i) for i in range(len(items)))
    return out


def resolve_inputs(dag: Dag, view: RunView, name: str, outputs: Outputs) -> list[InputArtifact]:
    """Every input of entry `name`, resolved to uploaded objects."""
    resolved = []
    for spec in view.spec(name).inputs:
        producer = dag.task(spec.from_task)
        items = view.items.get(spec.from_task)
        if producer.for_each is None or items is None:
            artifact = spec.artifact or producer.outputs[0]
            out = outputs.get(spec.from_task, {}).get(artifact)
            if out is None:
                raise LookupError(f"{spec.from_task!r} recorded no output {artifact!r}")
            resolved.append(_input(spec.name, spec.from_task, artifact, out))
            continue
        files = [spec.artifact] if spec.artifact else list(producer.outputs)
        for i in range(len(items)):
            inst = instance_name(spec.from_task, i)
            recorded = outputs.get(inst, {})
            # An instance that did not succeed (a trigger rule let this task run
            # anyway) has no outputs: its folder is simply absent.
            for file in files:
                if file in recorded:
                    resolved.append(_input(f"{spec.name}/{i}/{file}", inst, file, recorded[file]))
    return resolved


def _input(name: str, from_task: str, artifact: str, out: OutputArtifact) -> InputArtifact:
    return InputArtifact(name=name, from_task=from_task, artifact=artifact, key=out.key,
                         sha256=out.sha256, size=out.size)


def s3_reader(s3: Any, bucket: str, timeout_s: float = 30.0) -> ReadObject:
    """Reads a (small) object whole; a missing one is an ItemsError, anything else
    raises as is (the batch is retried with backoff)."""
    async def read(key: str) -> bytes:
        async with asyncio.timeout(timeout_s):
            try:
                response = await s3.get_object(Bucket=bucket, Key=key)
            except s3.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    raise ItemsError(f"s3://{bucket}/{key} is gone") from None
                raise
            async with response["Body"] as body:
                return bytes(await body.read())
    return read


Build = Callable[[list[tuple[str, int]], list[tuple[str, int, str]]], Awaitable[list[TaskDispatch]]]


async def dispatch_all(dag_id: str, view: RunView, plan: Plan, policy: Policy, build: Build,
                       merge: Callable[[Plan, Plan], None], run_changes: list[RunState],
                       launch: list[tuple[str, int]] | None = None) -> list[TaskDispatch]:
    """Build the dispatches of `launch` (default: `plan.launch`); an attempt whose
    run-time references cannot be rendered fails at once (reason TemplateError, not
    retried) and what that decides is merged into the plan."""
    bad: list[tuple[str, int, str]] = []
    out = await build(plan.launch if launch is None else launch, bad)
    while bad:
        name, attempt, message = bad.pop(0)
        plan.launch.remove((name, attempt))
        report = TaskReport(dag_id=dag_id, task=name, attempt=attempt, phase="failed",
                            at=time.time(), reason=decide.TEMPLATE_ERROR, message=message)
        step = decide.on_report(view, report, policy)
        if step.run_state is not None:
            run_changes.append(step.run_state)
        merge(plan, step)
        out += await build(step.launch, bad)
    return out
